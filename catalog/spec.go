package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// LinkSpec is one link in the catalog file's form, as the admin API and the
// feed carry it. Its JSON is the file's JSON: a list of them under "links"
// is a catalog file.
type LinkSpec struct {
	Code        string     `json:"code"`
	URL         string     `json:"url"`
	Status      string     `json:"status,omitempty"`
	FallbackURL string     `json:"fallback_url,omitempty"`
	Params      *[]string  `json:"params,omitempty"`
	Rules       []RuleSpec `json:"rules,omitempty"`
	Redirect    any        `json:"redirect,omitempty"` // 301, 302 (the default), 307 or "meta"
}

// RuleSpec is one rule of a LinkSpec.
type RuleSpec struct {
	Name  string       `json:"name"`
	When  *string      `json:"when,omitempty"`
	URL   string       `json:"url,omitempty"`
	Split []TargetSpec `json:"split,omitempty"`
	// Sticky draws the split's branch from the user's cookie, so a user
	// keeps the branch they got first.
	Sticky   bool `json:"sticky,omitempty"`
	Redirect any  `json:"redirect,omitempty"` // overrides the link's
}

// TargetSpec is one branch of a split.
type TargetSpec struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// CheckLink checks one link given as a JSON object in the catalog file's
// form, for the code the caller names (code in the object is optional and
// must equal it). It returns the link in canonical JSON (the form the
// replicated store keeps, persists and sends) and the built link, or an
// error joining *Error values whose Path names the field ("rules[0].when"),
// all wrapping ErrInvalid.
func CheckLink(code string, raw []byte) (canonical []byte, l *Link, err error) {
	raw = bytes.TrimSpace(raw)
	if !validCode(code) {
		return nil, nil, &Error{File: "link", Field: "code", Path: "code", Msg: fmt.Sprintf("%q: must match [A-Za-z0-9_-]{1,64}", code)}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil || probe == nil {
		msg := "want one JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		return nil, nil, &Error{File: "link", Msg: msg}
	}
	if c, ok := probe["code"]; ok {
		var s string
		if json.Unmarshal(c, &s) != nil || s != code {
			return nil, nil, &Error{File: "link", Link: fmt.Sprintf("link %q", code), Field: "code", Path: "code",
				Msg: fmt.Sprintf("%s: must equal the code in the path, %q", c, code)}
		}
	} else {
		// Put the code first, as the file has it.
		qc, _ := json.Marshal(code)
		rest := bytes.TrimSpace(raw[1:])
		if len(rest) > 0 && rest[0] != '}' {
			raw = append(append(append([]byte(`{"code":`), qc...), ','), rest...)
		} else {
			raw = append(append([]byte(`{"code":`), qc...), '}')
		}
	}
	doc := make([]byte, 0, len(raw)+12)
	doc = append(append(append(doc, `{"links":[`...), raw...), "]}"...)
	c, err := Parse("link", doc)
	if err != nil {
		return nil, nil, err
	}
	l = c.link(0)
	var spec LinkSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, nil, &Error{File: "link", Msg: err.Error()}
	}
	canonical, err = json.Marshal(&spec)
	if err != nil {
		return nil, nil, fmt.Errorf("catalog: encode link %q: %w", code, err)
	}
	return canonical, l, nil
}

// FieldOf returns the field an error from CheckLink names, the way the admin
// API reports it ("rules[0].when"), or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Path != "" {
			return e.Path
		}
		return e.Field
	}
	return ""
}
