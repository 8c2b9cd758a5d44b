package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/clickedge/clickedge/internal/bearer"
)

// maxInternalBody bounds an internal request's body (a hand-off batch).
const maxInternalBody = 64 << 20

// Handler returns the cluster's HTTP endpoints, for the admin listener:
//
//	GET  /admin/cluster          the members (token if one is set)
//	GET  /admin/cluster/keys     every live member's keys (token)
//	POST /admin/cluster/keys     {"op": "install|use|remove", "key": B64} on every live member (token)
//	GET  /cluster/v1/catalog     a page of catalog entries (signed)
//	POST /cluster/v1/handoff     a batch of outbox records (signed)
//	POST /cluster/v1/keys        a keyring change on this node (signed)
//
// token is admin.token: empty makes the key endpoints answer 403.
func (c *Cluster) Handler(token string) http.Handler {
	sum := bearer.New(token)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/cluster", authorized(sum, false, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Members []Member `json:"members"`
		}{c.Members()})
	}))
	mux.HandleFunc("GET /admin/cluster/keys", authorized(sum, true, func(w http.ResponseWriter, r *http.Request) {
		c.serveKeyOp(w, r, keyOp{Op: "list"})
	}))
	mux.HandleFunc("POST /admin/cluster/keys", authorized(sum, true, func(w http.ResponseWriter, r *http.Request) {
		var op keyOp
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&op); err != nil {
			httpError(w, http.StatusBadRequest, "want {\"op\": \"install|use|remove\", \"key\": BASE64}: "+err.Error())
			return
		}
		if op.Op != "install" && op.Op != "use" && op.Op != "remove" {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("op must be install, use or remove, got %q", op.Op))
			return
		}
		if _, err := ParseKey(op.Key); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		c.serveKeyOp(w, r, op)
	}))
	mux.HandleFunc("GET /cluster/v1/catalog", c.internal(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		c.serveCatalog(w, r)
	}))
	mux.HandleFunc("POST /cluster/v1/handoff", c.internal(c.serveHandoff))
	mux.HandleFunc("POST /cluster/v1/keys", c.internal(func(w http.ResponseWriter, r *http.Request, body []byte) {
		var op keyOp
		if err := json.Unmarshal(body, &op); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		res, err := c.applyKeyOp(op)
		if err != nil {
			httpError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
	return mux
}

// authorized guards an admin endpoint with the token (internal/bearer).
// write: the endpoint needs a token even when none is configured (then it
// is 403); a read is open without one.
func authorized(token *bearer.Token, write bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if token == nil && !write {
			h(w, r)
			return
		}
		if RequireToken(token, w, r) {
			h(w, r)
		}
	}
}

// RequireToken checks a request's bearer token for an admin write
// (internal/bearer). It reports true when the request may go on; else it
// has answered: 401 without a token, 403 with a wrong one or with none
// configured, {"error": reason}. The cluster API and clickedge's drain
// endpoint answer with it.
func RequireToken(token *bearer.Token, w http.ResponseWriter, r *http.Request) bool {
	return token.Allow(w, r, adminRefusals, httpError)
}

var adminRefusals = bearer.Reasons{
	NotConfigured: "no admin.token is configured: the admin API is read-only",
	Missing:       "missing Authorization: Bearer token",
	Wrong:         "wrong token",
}

// internal reads and authenticates an internal request.
func (c *Cluster) internal(h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInternalBody))
		if err != nil {
			httpError(w, http.StatusRequestEntityTooLarge, "body: "+err.Error())
			return
		}
		if _, err := c.verify(r, body); err != nil {
			httpError(w, http.StatusUnauthorized, err.Error())
			return
		}
		h(w, r, body)
	}
}

// call sends a signed internal request to m and decodes the JSON answer
// into out. A non-2xx answer is an error carrying its text.
func (c *Cluster) call(ctx context.Context, m Member, method, uri string, in, out any) error {
	var body []byte
	if in != nil {
		body = mustJSON(in)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+m.Admin+uri, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Clickedge-Cluster-Node", c.cfg.Name)
	c.sign(req, body)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return fmt.Errorf("%s %s: %s: %s", method, uri, resp.Status, msg)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// keyOp is a keyring change or listing.
type keyOp struct {
	Op  string `json:"op"` // install, use, remove or list
	Key string `json:"key,omitempty"`
}

// KeyState is one member's keyring.
type KeyState struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
}

// KeyResult is one member's outcome of a key operation.
type KeyResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	KeyState
}

// KeyReport is the answer of the admin key endpoints.
type KeyReport struct {
	Op      string      `json:"op"`
	Members []KeyResult `json:"members"`
	Failed  []string    `json:"failed"` // names of the members where it failed
}

// applyKeyOp changes this node's keyring.
func (c *Cluster) applyKeyOp(op keyOp) (KeyState, error) {
	kr := c.cfg.Keyring
	if kr == nil {
		return KeyState{}, errors.New("this node has no keyring (gossip is not encrypted)")
	}
	if op.Op != "list" {
		key, err := ParseKey(op.Key)
		if err != nil {
			return KeyState{}, err
		}
		switch op.Op {
		case "install":
			err = kr.Install(key)
		case "use":
			err = kr.Use(key)
		case "remove":
			err = kr.Remove(key)
		default:
			err = fmt.Errorf("unknown key operation %q", op.Op)
		}
		if err != nil {
			return KeyState{}, err
		}
		c.log.Info("cluster keyring changed", "op", op.Op, "keys", len(kr.Keys()), "file", kr.Path())
	}
	keys := kr.Keys()
	return KeyState{Primary: keys[0], Keys: keys}, nil
}

// KeyOp applies a key operation on every member: live ones are called,
// the others (dead, suspect) are reported failed; members that left are
// skipped. Peers are changed before this node, so every request is signed
// with a key the whole pool still holds.
func (c *Cluster) KeyOp(ctx context.Context, op, key string) KeyReport {
	rep := KeyReport{Op: op, Failed: []string{}}
	var peers []Member
	for _, m := range c.Members() {
		if m.Name == c.cfg.Name || m.State == StateLeft {
			continue
		}
		peers = append(peers, m)
	}
	results := make([]KeyResult, len(peers))
	var wg sync.WaitGroup
	for i, m := range peers {
		results[i].Name = m.Name
		if m.State != StateAlive {
			results[i].Error = fmt.Sprintf("member is %s: it missed this change; run it again once the member is back", m.State)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var ks KeyState
			if err := c.call(cctx, m, http.MethodPost, "/cluster/v1/keys", keyOp{Op: op, Key: key}, &ks); err != nil {
				results[i].Error = err.Error()
				return
			}
			results[i].OK, results[i].KeyState = true, ks
		}()
	}
	wg.Wait()
	self := KeyResult{Name: c.cfg.Name}
	if ks, err := c.applyKeyOp(keyOp{Op: op, Key: key}); err != nil {
		self.Error = err.Error()
	} else {
		self.OK, self.KeyState = true, ks
	}
	rep.Members = append([]KeyResult{self}, results...)
	for _, r := range rep.Members {
		if !r.OK {
			rep.Failed = append(rep.Failed, r.Name)
		}
	}
	return rep
}

func (c *Cluster) serveKeyOp(w http.ResponseWriter, r *http.Request, op keyOp) {
	rep := c.KeyOp(r.Context(), op.Op, op.Key)
	status := http.StatusOK
	if len(rep.Failed) > 0 {
		status = http.StatusBadGateway
	}
	writeJSON(w, status, rep)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// KeyFingerprint is a short, non-secret name of a base64 key for logs and
// tables: the first 8 hex digits of its SHA-256.
func KeyFingerprint(b64 string) string {
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "?"
	}
	s := sha256.Sum256(k)
	return fmt.Sprintf("%x", s[:4])
}
