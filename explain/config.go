package explain

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/handlers"
)

// config is the adapted configuration: the authgate app's realms and the HTTP
// servers' routes.
type config struct {
	app     handlers.App
	servers map[string]*caddyhttp.Server
	// compiled are the realms' callbacks, compiled once each.
	compiled map[string]*callbacks.Callbacks
}

// loadConfig adapts file as `caddy adapt` would — with the caddyfile adapter
// unless it is JSON or another adapter is named — and reads the parts explain
// needs.
func loadConfig(file, adapter string) (*config, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--config: %v", err)
	}
	if adapter == "" && !strings.EqualFold(filepath.Ext(file), ".json") {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("--adapter %q: no such config adapter", adapter)
		}
		if raw, _, err = a.Adapt(raw, map[string]any{"filename": file}); err != nil {
			return nil, fmt.Errorf("adapting %s: %v", file, err)
		}
	}
	var doc struct {
		Apps struct {
			Authgate json.RawMessage `json:"authgate"`
			HTTP     struct {
				Servers map[string]*caddyhttp.Server `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("reading the adapted configuration: %v", err)
	}
	c := &config{servers: doc.Apps.HTTP.Servers, compiled: map[string]*callbacks.Callbacks{}}
	if len(doc.Apps.Authgate) == 0 {
		return nil, fmt.Errorf("%s has no authgate global option", file)
	}
	if err := json.Unmarshal(doc.Apps.Authgate, &c.app); err != nil {
		return nil, fmt.Errorf("reading the authgate app: %v", err)
	}
	return c, nil
}

// realm returns the realm called name and its compiled callbacks. An empty
// name is the unnamed realm, or the only one there is.
func (c *config) realm(name string) (string, *handlers.Realm, *callbacks.Callbacks, error) {
	if name == "" {
		name = handlers.DefaultRealm
		if _, ok := c.app.Realms[name]; !ok && len(c.app.Realms) == 1 {
			for n := range c.app.Realms {
				name = n
			}
		}
	}
	r, ok := c.app.Realms[name]
	if !ok || r == nil {
		var names []string
		for n := range c.app.Realms {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", nil, nil, fmt.Errorf("no realm %q: the configuration has %s (--realm)", name, strings.Join(names, ", "))
	}
	if cb, ok := c.compiled[name]; ok {
		return name, r, cb, nil
	}
	var cfg callbacks.Config
	if r.Callbacks != nil {
		cfg = *r.Callbacks
	}
	repl := caddy.NewReplacer()
	cb, err := callbacks.Compile(cfg.Expand(func(s string) string { return repl.ReplaceAll(s, "") }))
	if err != nil {
		return "", nil, nil, fmt.Errorf("realm %s: %v", name, err)
	}
	c.compiled[name] = cb
	return name, r, cb, nil
}

// guard is a site handler of the authgate module on a request's way.
type guard struct {
	handlers.Handler
	// where names the server and route, for the output.
	where string
}

// guards returns the authgate handlers a request passes through, in order, as
// Caddy's routes would run them: matchers (Caddy's own), groups, subroutes
// and terminal routes are followed. The passive handlers that only strip
// headers from public routes are left out.
func (c *config) guards(req *http.Request) ([]guard, error) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	// The servers on the request's port first; then the others, for a --site
	// given as a bare host whose site listens on http only.
	var names []string
	for name := range c.servers {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if la, lb := listensFor(c.servers[a], req), listensFor(c.servers[b], req); la != lb {
			if la {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		w := walker{ctx: ctx, req: req}
		if err := w.walk(c.servers[name].Routes, "server "+name+", route "); err != nil {
			return nil, err
		}
		if len(w.found) > 0 {
			return w.found, nil
		}
	}
	return nil, nil
}

// listensFor reports whether srv listens on req's port (443 for https, else 80,
// unless the host names one), or on no port it says.
func listensFor(srv *caddyhttp.Server, req *http.Request) bool {
	port := "80"
	if req.TLS != nil {
		port = "443"
	}
	if _, p, err := net.SplitHostPort(req.Host); err == nil {
		port = p
	}
	if len(srv.Listen) == 0 {
		return true
	}
	return slices.ContainsFunc(srv.Listen, func(addr string) bool { return strings.HasSuffix(addr, ":"+port) })
}

// walker goes through routes as the server would for req.
type walker struct {
	ctx   caddy.Context
	req   *http.Request
	found []guard
	// done: a handler that answers the request ran; nothing after it does.
	done bool
}

// answering are handlers that answer the request rather than pass it on.
var answering = []string{"reverse_proxy", "static_response", "file_server", "error", "php_fastcgi"}

// walk goes through routes; prefix names them in the output ("server srv0,
// route 1.").
func (w *walker) walk(routes caddyhttp.RouteList, prefix string) error {
	groups := map[string]bool{}
	for i := range routes {
		rt := &routes[i]
		if w.done {
			return nil
		}
		if rt.Group != "" && groups[rt.Group] {
			continue
		}
		where := prefix + strconv.Itoa(i)
		if err := rt.ProvisionMatchers(w.ctx); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		ok, err := rt.MatcherSets.AnyMatchWithError(w.req)
		if err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		if !ok {
			continue
		}
		if rt.Group != "" {
			groups[rt.Group] = true
		}
		for _, raw := range rt.HandlersRaw {
			if err := w.handler(raw, where); err != nil || w.done {
				return err
			}
		}
		if rt.Terminal {
			return nil
		}
	}
	return nil
}

func (w *walker) handler(raw json.RawMessage, where string) error {
	var h struct {
		Handler string              `json:"handler"`
		Passive bool                `json:"passive"`
		Routes  caddyhttp.RouteList `json:"routes"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	switch {
	case h.Handler == "authgate" && !h.Passive:
		g := guard{where: where}
		if err := json.Unmarshal(raw, &g.Handler); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		w.found = append(w.found, g)
	case h.Handler == "subroute":
		return w.walk(h.Routes, where+".")
	case slices.Contains(answering, h.Handler):
		w.done = true
	}
	return nil
}

// siteRequest is the request explain matches routes with: --site's host (an
// origin gives the scheme too, else https) and --path, with the method,
// headers and query of the input's `request`.
func siteRequest(site, path string, request map[string]any) (*http.Request, error) {
	scheme, host := "https", site
	if strings.Contains(site, "://") {
		u, err := url.Parse(site)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("--site %q: want a host (app.example.com) or an origin (https://app.example.com)", site)
		}
		scheme, host = u.Scheme, u.Host
	}
	if path == "" {
		path, _ = request["path"].(string)
	}
	if path == "" {
		path = "/"
	}
	method, _ := request["method"].(string)
	if method == "" {
		method = http.MethodGet
	}
	u := &url.URL{Scheme: scheme, Host: host, Path: path}
	if q, ok := request["query"].(map[string]any); ok {
		v := url.Values{}
		for k, x := range q {
			v.Set(k, fmt.Sprint(x))
		}
		u.RawQuery = v.Encode()
	}
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("--site %q --path %q: %v", site, path, err)
	}
	if h, ok := request["headers"].(map[string]any); ok {
		for k, x := range h {
			req.Header.Set(k, fmt.Sprint(x))
		}
	}
	if ip, _ := request["remote_ip"].(string); ip != "" {
		req.RemoteAddr = net.JoinHostPort(ip, "0")
	}
	if scheme == "https" {
		req.TLS = &tls.ConnectionState{}
	}
	return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), nil, nil), nil
}
