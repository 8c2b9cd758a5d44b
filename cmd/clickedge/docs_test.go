package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// harden #14: the links in docs/ and README.md stay inside the repository:
// every relative link names a file of the repository (no ../ out of it, no
// absolute or file: path), and every #anchor a heading of its file.
func TestDocsLinksStayInTheRepo(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files = append(files, filepath.Join(root, "README.md"))
	if len(files) < 5 {
		t.Fatalf("found %d markdown files under %s, want docs/*.md and README.md", len(files), root)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchors := map[string]map[string]bool{} // file -> heading slugs
	slugs := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		b, err := os.ReadFile(path)
		if err == nil {
			inCode := false
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "```") {
					inCode = !inCode
				}
				if !inCode && strings.HasPrefix(l, "#") {
					a[slug(strings.TrimLeft(l, "# "))] = true
				}
			}
		}
		anchors[path] = a
		return a
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			if strings.HasPrefix(target, "/") || strings.HasPrefix(target, "file:") {
				t.Errorf("%s: link %q is an absolute path, not a file of the repository", rel, target)
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := f
			if file != "" {
				path = filepath.Join(filepath.Dir(f), file)
				if r, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(r, "..") {
					t.Errorf("%s: link %q leaves the repository", rel, target)
					continue
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link %q: %v", rel, target, err)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !slugs(path)[anchor] {
				t.Errorf("%s: link %q: no heading with anchor #%s in %s", rel, target, anchor, filepath.Base(path))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link checked")
	}
}

// slug is GitHub's anchor for a heading: lower case, spaces to '-', and
// punctuation other than '-' and '_' dropped.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
