package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Agent-to-agent requests (the failsafe check, salvage, a rebuild's backup) are
// signed with the cluster's peer secret: HMAC-SHA256 over a prefix naming what
// the body is (each request and answer has its own, so that one is never taken
// for another) and the body, in SignatureHeader.

func sign(secret []byte, kind string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(kind))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func signedBy(secret []byte, kind string, body []byte, sig string) bool {
	return hmac.Equal([]byte(sign(secret, kind, body)), []byte(sig))
}

// signedRequest is what readSigned checks of one kind of request.
type signedRequest struct {
	what   string // "failsafe check", "salvage request": named in refusals and the log
	secret []byte
	mac    string // the request's MAC prefix
	off    string // non-empty: this agent does not answer it, and says why (404)
	max    int    // the body's limit; 0 is maxBody
	log    *zap.Logger
}

// readSigned reads a signed request into v, or refuses it and says so to the
// client: another method than POST (405), an agent that does not answer it (404),
// a body unreadable or over its limit (400), one not signed with the secret (401,
// logged), or not JSON (400). It returns whether v was read.
func readSigned(w http.ResponseWriter, r *http.Request, s signedRequest, v any) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		text(w, http.StatusMethodNotAllowed, "method not allowed: POST a signed "+s.what)
		return false
	}
	if s.off != "" {
		text(w, http.StatusNotFound, s.off)
		return false
	}
	limit := s.max
	if limit <= 0 {
		limit = maxBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil || len(body) > limit {
		text(w, http.StatusBadRequest, "bad request: body unreadable or too large")
		return false
	}
	if len(s.secret) == 0 || !signedBy(s.secret, s.mac, body, r.Header.Get(SignatureHeader)) {
		s.log.Warn("a "+s.what+" not signed with this cluster's peer secret", zap.String("remote", r.RemoteAddr))
		text(w, http.StatusUnauthorized, "unauthorized: not signed with this cluster's peer secret")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		text(w, http.StatusBadRequest, "bad request: "+err.Error())
		return false
	}
	return true
}

// staleRequest says why a request sent at sent is too far from this node's clock
// to be answered (more than maxRequestAge either way), "" when it is not.
func staleRequest(sent time.Time) string {
	if skew := time.Since(sent); skew > maxRequestAge || skew < -maxRequestAge {
		return fmt.Sprintf("sent %s, %s from this node's clock (limit %s)", sent.Format(time.RFC3339), skew.Round(time.Second), maxRequestAge)
	}
	return ""
}

// writeSigned answers v as JSON, signed with secret as kind (the answer's MAC
// prefix), not to be cached.
func writeSigned(w http.ResponseWriter, secret []byte, kind string, v any) {
	out, err := json.Marshal(v)
	if err != nil {
		text(w, http.StatusInternalServerError, "marshal the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(SignatureHeader, sign(secret, kind, out))
	w.Write(out)
}
