package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProductModuleLean proves issue 12 item 13: the libraries only the
// bench uses are required by bench/go.mod, not by clickedge's go.mod, and
// the bench builds against the checkout around it.
func TestProductModuleLean(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	product, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	bench, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"gonum.org/v1/plot", "github.com/tsenart/vegeta"} {
		if strings.Contains(string(product), mod) {
			t.Errorf("clickedge's go.mod requires %s; only bench/go.mod should", mod)
		}
		if !strings.Contains(string(bench), mod) {
			t.Errorf("bench/go.mod does not require %s, which the bench imports", mod)
		}
	}
	if !strings.Contains(string(bench), "replace "+productModule+" => ../") {
		t.Errorf("bench/go.mod has no replace of %s by the checkout around it", productModule)
	}
}
