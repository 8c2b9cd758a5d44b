package main

import (
	"errors"
	"os"
	"path/filepath"
)

// mkdirAllTracked is os.MkdirAll that appends the directories it created
// to created, deepest first.
func mkdirAllTracked(dir string, perm os.FileMode, created *[]string) error {
	var missing []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			break // MkdirAll reports it
		}
		missing = append(missing, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	*created = append(*created, missing...)
	return nil
}

// removeCreated removes the outbox file and directories a failed start
// created. A directory that is not empty (someone else wrote there) stays.
func (n *node) removeCreated() {
	if p := n.createdOutbox; p != "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.log.Warn("cannot remove the outbox the failed start created", "path", p, "err", err)
		}
	}
	if p := n.createdCatalog; p != "" {
		// Created by this start, so it holds only what the seed wrote.
		if err := os.RemoveAll(p); err != nil {
			n.log.Warn("cannot remove the catalog the failed start created", "path", p, "err", err)
		}
	}
	for _, d := range n.createdDirs {
		os.Remove(d) // fails, as it should, if not empty
	}
}
