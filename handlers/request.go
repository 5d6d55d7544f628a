package handlers

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// requestVars is the `request` variable of rules.
// Cookies and credentials are left out: rules have no use for them, and webhooks
// receive these variables.
func requestVars(r *http.Request) map[string]any {
	headers := make(map[string]any, len(r.Header))
	for k, v := range r.Header {
		switch k = strings.ToLower(k); k {
		case "cookie", "authorization", "proxy-authorization":
			continue
		}
		headers[k] = strings.Join(v, ",")
	}
	query := map[string]any{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",")
	}
	return map[string]any{
		"method":    r.Method,
		"host":      r.Host,
		"path":      r.URL.Path,
		"query":     query,
		"headers":   headers,
		"remote_ip": clientIP(r),
	}
}

// clientIP is the client's address as Caddy determined it (trusted_proxies
// applied), or the connection's peer.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// isNavigation reports whether r looks like a browser loading a page, which is
// worth a redirect to the sign-in page; scripts and API clients get a status.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html") &&
		r.Header.Get("X-Requested-With") == ""
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with {"error": code}.
func writeError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

// randomString is 256 random bits, URL-safe: session ids, email tokens, state.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
