package main

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/clickedge/clickedge/outbox"
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
		// Its log too: a node that never served answered nothing, so the
		// log of an outbox this start created holds nothing to keep.
		for _, f := range []string{p, outbox.LogPath(p)} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				n.log.Warn("cannot remove the outbox the failed start created", "path", f, "err", err)
			}
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
