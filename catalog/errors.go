package catalog

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is returned (wrapped, inside the joined error of Parse and Load)
// when a catalog file is malformed or breaks a rule of the format. Every
// *Error unwraps to it, so errors.Is(err, ErrInvalid) tells a bad catalog
// from an I/O error.
var ErrInvalid = errors.New("invalid catalog")

// maxErrors caps how many problems Parse reports: enough to fix a catalog in
// one pass, not so many that the first ones scroll away.
const maxErrors = 20

// Error is one problem found in a catalog file. Parse returns all of them
// joined (errors.Join), sorted by position.
type Error struct {
	File   string // the name given to Parse or the path given to Load
	Line   int    // 1-based line in the file; 0 when unknown
	Column int    // 1-based column; 0 when unknown
	Link   string // `link "code"` or `link #3` when the code is unusable; "" when not about a link
	Rule   string // `rule "name"` or `rule #2`; "" when not about a rule
	Field  string // the key inside the link or rule, e.g. "when" or "split[1].weight"; may be ""
	Path   string // the field's path inside the link, e.g. "rules[0].when" or "params[2]"; "" when the decoder could not place it
	Msg    string // the reason
}

// Error formats as "links.yaml:12:9: link "tv-sale": rule "de-mobile": when: unknown name cuntry (1:1)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	for _, s := range [...]string{e.Link, e.Rule, e.Field, e.Msg} {
		if s != "" {
			b.WriteString(": ")
			b.WriteString(s)
		}
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// errorList collects problems while a catalog is checked.
type errorList struct {
	file  string
	errs  []*Error
	limit int // at most this many are reported; 0: all
}

func (l *errorList) add(e *Error) {
	e.File = l.file
	l.errs = append(l.errs, e)
}

// err sorts by position, caps the list and joins it; nil when empty.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(l.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	n := len(l.errs)
	if l.limit > 0 {
		n = min(n, l.limit)
	}
	out := make([]error, 0, n+1)
	for _, e := range l.errs[:n] {
		out = append(out, e)
	}
	if rest := len(l.errs) - n; rest > 0 {
		out = append(out, &Error{File: l.file, Msg: fmt.Sprintf("and %d more errors", rest)})
	}
	return errors.Join(out...)
}

// fieldPath renders a path of keys and indexes inside a link the way the
// admin API names fields: rules[0].split[1].url.
func fieldPath(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		}
	}
	return b.String()
}
