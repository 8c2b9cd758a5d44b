package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// sqlBlocks returns the ```sql blocks of the section of a markdown file
// that starts at the heading line head (up to the next heading of its
// level or above).
func sqlBlocks(t *testing.T, path, head string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+head+"\n")
	if i < 0 {
		t.Fatalf("%s has no heading %q", path, head)
	}
	s = s[i+len(head)+2:]
	level := strings.Fields(head)[0] + " "
	if j := strings.Index(s, "\n"+level); j >= 0 {
		s = s[:j]
	}
	var blocks []string
	for {
		k := strings.Index(s, "```sql\n")
		if k < 0 {
			return blocks
		}
		s = s[k+len("```sql\n"):]
		end := strings.Index(s, "```")
		if end < 0 {
			t.Fatalf("%s: unterminated sql block", path)
		}
		blocks = append(blocks, s[:end])
		s = s[end+3:]
	}
}

// The queries consumers.md shows for the collector's tables are those of
// collector.md (its reference, next to the schema): a
// change of one that is not made in the other fails here.
func TestConsumersQueriesMatchCollector(t *testing.T) {
	consumers := sqlBlocks(t, "../../docs/consumers.md", "## Querying the collector")
	reference := sqlBlocks(t, "../../docs/collector.md", "## Querying")
	if len(consumers) < 3 {
		t.Fatalf("consumers.md, Querying the collector: %d sql blocks, want the counts per link and region", len(consumers))
	}
	for _, q := range consumers {
		if !slices.Contains(reference, q) {
			t.Errorf("consumers.md has a query that collector.md's Querying does not:\n%s", q)
		}
	}
}
