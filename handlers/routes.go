package handlers

import (
	"net/http"
	"sort"
	"strings"
)

// endpointFunc serves one endpoint; arg is the path segment after the
// endpoint's name (the provider of /signin/{provider}), or "". h is the site
// handler the request came through (/verify applies its rules).
type endpointFunc func(w http.ResponseWriter, r *http.Request, arg string, h *Handler)

// route is one endpoint: what serves each method it allows.
type route struct {
	methods map[string]endpointFunc
	allow   string // the Allow header of a 405
}

// routes is the realm's table of endpoints under its base path, built at
// provision: the one list of endpoints and of the methods each allows.
type routes map[string]*route

// handle adds an endpoint. pattern is a name ("session"), a name and an
// argument ("signin/{}") or a fixed sub-path ("admin/revoke"). GET also
// serves HEAD.
func (rt routes) handle(pattern, method string, f endpointFunc) {
	ro := rt[pattern]
	if ro == nil {
		ro = &route{methods: map[string]endpointFunc{}}
		rt[pattern] = ro
	}
	ro.methods[method] = f
	if method == http.MethodGet {
		ro.methods[http.MethodHead] = f
	}
	allowed := make([]string, 0, len(ro.methods))
	for m := range ro.methods {
		allowed = append(allowed, m)
	}
	sort.Strings(allowed)
	ro.allow = strings.Join(allowed, ", ")
}

// lookup finds the route of sub (the path under the base path, with its
// leading slash) and its argument.
func (rt routes) lookup(sub string) (*route, string) {
	name, arg, _ := strings.Cut(strings.TrimPrefix(sub, "/"), "/")
	if ro := rt[name+"/"+arg]; ro != nil && arg != "" {
		return ro, ""
	}
	if arg != "" {
		return rt[name+"/{}"], arg
	}
	return rt[name], ""
}

// newRoutes is the table of rl's endpoints (DESIGN.md's endpoint table).
func newRoutes(rl *realm) routes {
	rt := routes{}
	rt.handle("signin", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.signinPage(w, r) })
	rt.handle("signin/{}", http.MethodPost, func(w http.ResponseWriter, r *http.Request, id string, _ *Handler) { rl.signin(w, r, id) })
	rt.handle("callback/{}", http.MethodGet, func(w http.ResponseWriter, r *http.Request, id string, _ *Handler) { rl.callback(w, r, id) })
	rt.handle("callback/{}", http.MethodPost, func(w http.ResponseWriter, r *http.Request, id string, _ *Handler) { rl.callback(w, r, id) })
	rt.handle("signout", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.signoutPage(w, r) })
	rt.handle("signout", http.MethodPost, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.signout(w, r) })
	rt.handle("session", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.sessionJSON(w, r) })
	rt.handle("session", http.MethodPost, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.updateSession(w, r) })
	rt.handle("csrf", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.csrfJSON(w, r) })
	rt.handle("providers", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.providersJSON(w, r) })
	rt.handle("error", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.errorPage(w, r) })
	rt.handle("verify-request", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.verifyRequestPage(w, r) })
	rt.handle("verify", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, h *Handler) { rl.verify(w, r, h) })
	rt.handle("backchannel-logout/{}", http.MethodPost, func(w http.ResponseWriter, r *http.Request, id string, _ *Handler) { rl.backchannelLogout(w, r, id) })
	rt.handle("jwks.json", http.MethodGet, func(w http.ResponseWriter, _ *http.Request, _ string, _ *Handler) { rl.jwks(w) })
	rt.handle("health", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.health(w, r) })
	if rl.admin != nil {
		rt.handle("admin/sessions", http.MethodGet, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.adminSessions(w, r) })
		rt.handle("admin/revoke", http.MethodPost, func(w http.ResponseWriter, r *http.Request, _ string, _ *Handler) { rl.adminRevoke(w, r) })
	}
	return rt
}

// endpoint reports whether path is under the realm's base path, and the rest of it.
func (rl *realm) endpoint(path string) (string, bool) {
	if !strings.HasPrefix(path, rl.basePath) {
		return "", false
	}
	rest := path[len(rl.basePath):]
	if rest == "" || rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// serveEndpoint serves a request under the base path: its route, a 405 that
// names the methods the endpoint allows, or a 404.
func (rl *realm) serveEndpoint(w http.ResponseWriter, r *http.Request, sub string, h *Handler) error {
	w.Header().Set("Cache-Control", "private, no-store")
	ro, arg := rl.routes.lookup(sub)
	if ro == nil {
		rl.pages.message(w, http.StatusNotFound, pageData{Title: "Not found", Message: "There is no sign-in page at this address."})
		return nil
	}
	f := ro.methods[r.Method]
	if f == nil {
		w.Header().Set("Allow", ro.allow)
		rl.pages.message(w, http.StatusMethodNotAllowed, pageData{Title: "Method not allowed", Message: "This address does not take that kind of request."})
		return nil
	}
	f(w, r, arg, h)
	return nil
}
