// Package handlers is authgate's HTTP side: the `authgate` app with its realms,
// the guard that lets only signed-in users through to the upstream, and the
// /.auth/* sign-in endpoints with their HTML pages.
package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
)

// Handler guards routes: requests without a valid session are sent to sign in
// (browsers) or answered 401; requests with one go on with the user's identity
// in headers. It also serves the realm's /.auth/* endpoints.
type Handler struct {
	// Realm names the realm of the `authgate` app to sign users in with. Default: "default".
	Realm string `json:"realm,omitempty"`

	// Headers set on the request to the upstream, each from a CEL expression over
	// `session`, `token` and `request`. When empty, the defaults are set:
	// X-Auth-Request-User (sub), X-Auth-Request-Email and X-Auth-Request-Name.
	Headers []HeaderConfig `json:"headers,omitempty"`

	// Require lists conditions that must all hold for a signed-in user to pass.
	// (Arrives with the rule engine; not accepted yet.)
	Require []callbacks.Condition `json:"require,omitempty"`

	// UnauthenticatedStatus, when set, answers signed-out requests with this status
	// instead of redirecting browsers to the sign-in page.
	UnauthenticatedStatus int `json:"unauthenticated_status,omitempty"`

	realm   *realm
	headers []header
	strip   map[string]struct{}
	logger  *zap.Logger
}

// HeaderConfig is one identity header for the upstream.
type HeaderConfig struct {
	// Name of the header.
	Name string `json:"name"`
	// Expr is a CEL expression; a list is joined with ",", an empty value or an
	// absent field removes the header.
	Expr string `json:"expr"`
}

type header struct {
	name string
	expr *callbacks.Expr
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision looks up the realm and compiles the header expressions.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("authgate")
	if err != nil {
		return fmt.Errorf("loading the authgate app: %v", err)
	}
	if h.realm, err = appIface.(*App).realm(h.Realm); err != nil {
		return err
	}
	if len(h.Require) > 0 {
		return fmt.Errorf("require is not supported yet")
	}
	h.strip = map[string]struct{}{}
	for _, hc := range h.Headers {
		if hc.Name == "" || strings.ContainsAny(hc.Name, " :\t\r\n") {
			return fmt.Errorf("header %q: invalid header name", hc.Name)
		}
		e, err := callbacks.CompileExpr(hc.Expr, "session", "token", "request")
		if err != nil {
			return fmt.Errorf("header %s: %v", hc.Name, err)
		}
		h.headers = append(h.headers, header{name: http.CanonicalHeaderKey(hc.Name), expr: e})
		h.strip[headerKey(hc.Name)] = struct{}{}
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if s := h.UnauthenticatedStatus; s != 0 && (s < 400 || s > 499) {
		return fmt.Errorf("unauthenticated status %d: want a 4xx status", s)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rl := h.realm
	if sub, ok := rl.endpoint(r.URL.Path); ok {
		return rl.serveEndpoint(w, r, sub)
	}

	h.stripIdentityHeaders(r)
	st, ok := rl.readSession(w, r)
	if !ok {
		return h.unauthenticated(w, r)
	}
	rl.stripAuthCookies(r)

	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl != nil {
		repl.Set("http.auth.user.id", st.token["sub"])
		repl.Set("http.auth.user.email", st.token["email"])
		repl.Set("http.auth.user.name", st.token["name"])
	}
	if len(h.headers) == 0 {
		setIf(r.Header, "X-Auth-Request-User", st.token["sub"])
		setIf(r.Header, "X-Auth-Request-Email", st.token["email"])
		setIf(r.Header, "X-Auth-Request-Name", st.token["name"])
		return next.ServeHTTP(w, r)
	}
	vars := map[string]any{"session": st.session(), "token": st.token, "request": requestVars(r)}
	for _, hd := range h.headers {
		v, err := hd.expr.String(vars)
		if err != nil && err != callbacks.ErrAbsent {
			h.logger.Error("header expression failed; refusing the request", zap.String("header", hd.name), zap.Error(err))
			return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("header %s: %v", hd.name, err))
		}
		if v != "" {
			r.Header.Set(hd.name, v)
		}
	}
	return next.ServeHTTP(w, r)
}

// unauthenticated answers a request that has no valid session.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if h.UnauthenticatedStatus == 0 && isNavigation(r) {
		target := h.realm.base(r).String() + r.URL.RequestURI()
		http.Redirect(w, r, h.realm.basePath+"/signin?callbackUrl="+url.QueryEscape(target), http.StatusFound)
		return nil
	}
	status := h.UnauthenticatedStatus
	if status == 0 {
		status = http.StatusUnauthorized
	}
	writeJSON(w, status, map[string]string{"error": "SessionRequired"})
	return nil
}

// isNavigation reports whether r looks like a browser loading a page, which is
// worth a redirect to the sign-in page; scripts and API clients get a status.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html") &&
		r.Header.Get("X-Requested-With") == ""
}

// stripIdentityHeaders deletes every client-sent header the upstream could
// mistake for identity: any X-Auth-Request-* and any configured header, in any
// case and with '_' for '-' (some servers map both to the same variable).
func (h *Handler) stripIdentityHeaders(r *http.Request) {
	for k := range r.Header {
		key := headerKey(k)
		if strings.HasPrefix(key, "x-auth-request-") {
			delete(r.Header, k)
			continue
		}
		if _, ok := h.strip[key]; ok {
			delete(r.Header, k)
		}
	}
}

func headerKey(k string) string {
	return strings.ReplaceAll(strings.ToLower(k), "_", "-")
}

func setIf(hdr http.Header, name string, v any) {
	if s, ok := v.(string); ok && s != "" {
		hdr.Set(name, s)
	}
}

// requestVars is the `request` variable of rules.
func requestVars(r *http.Request) map[string]any {
	headers := make(map[string]any, len(r.Header))
	for k, v := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	query := map[string]any{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",")
	}
	remote, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return map[string]any{
		"method":    r.Method,
		"host":      r.Host,
		"path":      r.URL.Path,
		"query":     query,
		"headers":   headers,
		"remote_ip": remote,
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sessionState is a decoded session token.
type sessionState struct {
	rl      *realm
	token   map[string]any
	expires time.Time
}

func (s *sessionState) session() map[string]any {
	return s.rl.cb.Session(s.token, s.expires)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
