package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
)

// BasicAuth lets through only requests that carry user and password (HTTP basic
// authentication). It compares in constant time. Use it over TLS: basic
// authentication sends the password in the clear otherwise.
func BasicAuth(user, password string, next http.Handler) (http.Handler, error) {
	if user == "" {
		return nil, errors.New("web: basic auth: user is empty")
	}
	if password == "" {
		return nil, errors.New("web: basic auth: password is empty")
	}
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="Baton", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}
