package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Keyring errors.
var (
	// ErrKeyUnknown is returned by Use and Remove for a key not installed.
	ErrKeyUnknown = errors.New("key is not installed")
	// ErrKeyPrimary is returned by Remove for the primary key.
	ErrKeyPrimary = errors.New("the primary key cannot be removed (make another key primary first)")
)

// Keyring is the gossip keyring and the file that keeps it. The file is a
// JSON array of base64 keys (16, 24 or 32 bytes: AES-128, -192, -256), the
// first one primary. Its methods are safe for concurrent use; a change is
// written to the file (atomically) before memberlist uses it.
type Keyring struct {
	path string
	ml   *memberlist.Keyring

	mu sync.Mutex // serialises changes and file writes
}

// ParseKey decodes a base64 key and checks its length.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("key is not base64: %w", err)
	}
	if err := memberlist.ValidateKey(k); err != nil {
		return nil, fmt.Errorf("key must be 16, 24 or 32 bytes, got %d", len(k))
	}
	return k, nil
}

// ParseKeyring decodes a keyring file's content.
func ParseKeyring(data []byte) ([][]byte, error) {
	var ss []string
	if err := json.Unmarshal(data, &ss); err != nil {
		return nil, fmt.Errorf("want a JSON array of base64 keys: %w", err)
	}
	if len(ss) == 0 {
		return nil, errors.New("no keys (the first key is the primary)")
	}
	keys := make([][]byte, 0, len(ss))
	for i, s := range ss {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// LoadKeyring reads the keyring file at path.
func LoadKeyring(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	keys, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	ml, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return &Keyring{path: path, ml: ml}, nil
}

// LoadKeyringBytes builds a keyring from a file's content, with no file
// to keep changes in (changes then fail); for tests and checks.
func LoadKeyringBytes(data []byte) (*Keyring, error) {
	keys, err := ParseKeyring(data)
	if err != nil {
		return nil, err
	}
	ml, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return nil, err
	}
	return &Keyring{ml: ml}, nil
}

// Path is the keyring file.
func (k *Keyring) Path() string { return k.path }

// Keys returns the keys, base64, the primary first.
func (k *Keyring) Keys() []string {
	ks := k.ml.GetKeys() // primary first
	out := make([]string, len(ks))
	for i, b := range ks {
		out[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}

// Primary returns the primary key (raw bytes).
func (k *Keyring) Primary() []byte { return k.ml.GetPrimaryKey() }

// all returns every key, the primary first.
func (k *Keyring) all() [][]byte { return k.ml.GetKeys() }

// Install adds key as a secondary key: gossip under it is accepted from
// now on. Installing a key already there changes nothing.
func (k *Keyring) Install(key []byte) error {
	return k.change(func(keys [][]byte) ([][]byte, error) {
		for _, x := range keys {
			if bytes.Equal(x, key) {
				return keys, nil
			}
		}
		return append(keys, key), nil
	}, func() error { return k.ml.AddKey(key) })
}

// Use makes an installed key the primary: gossip is sent under it.
func (k *Keyring) Use(key []byte) error {
	return k.change(func(keys [][]byte) ([][]byte, error) {
		i := indexKey(keys, key)
		if i < 0 {
			return nil, ErrKeyUnknown
		}
		out := [][]byte{key}
		for j, x := range keys {
			if j != i {
				out = append(out, x)
			}
		}
		return out, nil
	}, func() error { return k.ml.UseKey(key) })
}

// Remove deletes a secondary key: gossip under it is refused from now on.
func (k *Keyring) Remove(key []byte) error {
	return k.change(func(keys [][]byte) ([][]byte, error) {
		i := indexKey(keys, key)
		switch {
		case i < 0:
			return nil, ErrKeyUnknown
		case i == 0:
			return nil, ErrKeyPrimary
		}
		return append(keys[:i:i], keys[i+1:]...), nil
	}, func() error { return k.ml.RemoveKey(key) })
}

// change computes the new key list from the current one (primary first),
// writes it to the file, then applies it to memberlist's keyring.
func (k *Keyring) change(next func([][]byte) ([][]byte, error), apply func() error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys, err := next(k.ml.GetKeys())
	if err != nil {
		return err
	}
	if k.path == "" {
		return errors.New("keyring: no file to keep the change in")
	}
	if err := writeKeyring(k.path, keys); err != nil {
		return err
	}
	return apply()
}

func indexKey(keys [][]byte, key []byte) int {
	for i, x := range keys {
		if bytes.Equal(x, key) {
			return i
		}
	}
	return -1
}

// writeKeyring replaces the file at path with keys, atomically: a temp
// file in the same directory, fsynced, renamed over the old one, and the
// directory fsynced so the rename survives a power loss.
func writeKeyring(path string, keys [][]byte) error {
	ss := make([]string, len(keys))
	for i, b := range keys {
		ss[i] = base64.StdEncoding.EncodeToString(b)
	}
	data, _ := json.MarshalIndent(ss, "", "  ")
	data = append(data, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
