package explain

import (
	"fmt"
	"maps"
	"net/url"
	"strings"
	"time"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/handlers"
)

func (e *explainer) signIn() (result, error) {
	_, _, cb, err := e.cfg.realm(e.opts.realm)
	if err != nil {
		return result{}, err
	}
	d, err := cb.SignIn(e.ctx(), callbacks.SignInInput{
		User: e.object("user"), Account: e.object("account"), Profile: e.object("profile"),
		Email: e.object("email"), Credentials: e.object("credentials"), Request: e.request(),
	})
	switch {
	case err != nil:
		return failed(err), nil
	case d.Redirect != "":
		return result{decision: "redirect", detail: d.Redirect}, nil
	case d.Allow:
		return result{decision: "allow"}, nil
	}
	return result{decision: "deny"}, nil
}

// redirect runs the redirect callback for `url`: allow <url> when the URL is
// kept, deny when the base URL replaces it, redirect <url> for another URL.
func (e *explainer) redirect() (result, error) {
	_, _, cb, err := e.cfg.realm(e.opts.realm)
	if err != nil {
		return result{}, err
	}
	target, _ := e.vars["url"].(string)
	if target == "" {
		return result{}, fmt.Errorf("%s: the redirect callback needs `url`, the callbackUrl to check", e.opts.input)
	}
	rawBase, _ := e.vars["base_url"].(string)
	if rawBase == "" && e.opts.site != "" {
		req, err := siteRequest(e.opts.site, "/", nil)
		if err != nil {
			return result{}, err
		}
		rawBase = req.URL.Scheme + "://" + req.Host
	}
	base, err := url.Parse(rawBase)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return result{}, fmt.Errorf("%s: the redirect callback needs `base_url`, the site's origin such as https://app.example.com (or --site)", e.opts.input)
	}
	u, err := cb.Redirect(e.ctx(), target, base, e.request())
	if err != nil {
		return failed(err), nil
	}
	if kept, err := base.Parse(target); err == nil && sameURL(kept.String(), u) {
		return result{decision: "allow", detail: u}, nil
	}
	if sameURL(u, base.String()) {
		return denied("to " + u), nil
	}
	return result{decision: "redirect", detail: u}, nil
}

// sameURL compares URLs that the redirect check may have written with or
// without the root path's slash.
func sameURL(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	for _, u := range []*url.URL{ua, ub} {
		if u.Path == "" {
			u.Path = "/"
		}
	}
	return ua.String() == ub.String()
}

func (e *explainer) jwt() (result, error) {
	_, _, cb, err := e.cfg.realm(e.opts.realm)
	if err != nil {
		return result{}, err
	}
	e.warnUnknownKeys(cb.UnknownKeys())
	trigger, _ := e.vars["trigger"].(string)
	if trigger == "" {
		trigger = "update"
		if e.vars["user"] != nil {
			trigger = "sign_in"
		}
	}
	isNew, _ := e.vars["is_new_user"].(bool)
	tok, err := cb.JWT(e.ctx(), callbacks.JWTInput{
		Token: e.object("token"), User: e.object("user"), Account: e.object("account"), Profile: e.object("profile"),
		IsNewUser: isNew, Trigger: trigger, Session: e.vars["session"], Request: e.request(),
	})
	if err != nil {
		return failed(err), nil
	}
	return result{value: tok}, nil
}

func (e *explainer) session() (result, error) {
	_, realm, cb, err := e.cfg.realm(e.opts.realm)
	if err != nil {
		return result{}, err
	}
	e.warnUnknownKeys(cb.UnknownKeys())
	s, err := e.sessionOf(cb, realm)
	if err != nil {
		return failed(err), nil
	}
	return result{value: s}, nil
}

// sessionOf runs the session callback for the input's token.
func (e *explainer) sessionOf(cb *callbacks.Callbacks, realm *handlers.Realm) (map[string]any, error) {
	tok := e.object("token")
	return cb.Session(e.ctx(), callbacks.SessionInput{Token: tok, Expires: expiry(tok, realm), User: e.object("user"), Request: e.request()})
}

// expiry is when the token expires: its exp, or a session's max_age from now.
func expiry(tok map[string]any, realm *handlers.Realm) time.Time {
	if exp, ok := tok["exp"].(float64); ok {
		return time.Unix(int64(exp), 0)
	}
	maxAge := 30 * 24 * time.Hour
	if realm.Session != nil && realm.Session.MaxAge > 0 {
		maxAge = time.Duration(realm.Session.MaxAge)
	}
	return time.Now().Add(maxAge)
}

// require evaluates the require lines of every authgate handler a request for
// --site and --path passes through: all must hold, as when guards are stacked.
// The session is the input's, or the session callback's for the input's token.
func (e *explainer) require() (result, error) {
	if e.opts.site == "" {
		return result{}, fmt.Errorf("--callback require needs --site (and --path) to find the site handler")
	}
	request, _ := e.vars["request"].(map[string]any)
	req, err := siteRequest(e.opts.site, e.opts.path, request)
	if err != nil {
		return result{}, err
	}
	guards, err := e.cfg.guards(req)
	if err != nil {
		return result{}, err
	}
	if len(guards) == 0 {
		return result{}, fmt.Errorf("no authgate handler guards %s%s in this configuration", req.Host, req.URL.Path)
	}
	vars := map[string]any{"token": e.object("token"), "request": e.requestOf(req.Host, req.URL.Path)}
	for _, g := range guards {
		name, realm, cb, err := e.cfg.realm(g.Realm)
		if err != nil {
			return result{}, err
		}
		e.note("%s: authgate (realm %s), %d require line(s)", g.where, name, len(g.Require))
		e.warnUnknownKeys(cb.UnknownKeys())
		if vars["session"] = e.vars["session"]; vars["session"] == nil {
			if vars["session"], err = e.sessionOf(cb, realm); err != nil {
				return failed(err), nil
			}
		}
		for i, c := range g.Require {
			chk, err := callbacks.CompileCheck(c, fmt.Sprintf("require #%d", i+1))
			if err != nil {
				return result{}, err
			}
			e.warnUnknownKeys(cb.UnknownKeysIn(chk))
			ok, err := chk.Explain(e.trace, vars)
			if err != nil {
				return failed(err), nil
			}
			if !ok {
				return denied(chk.Source()), nil
			}
		}
	}
	return result{decision: "allow"}, nil
}

func (e *explainer) warnUnknownKeys(keys []callbacks.UnknownKey) {
	for _, u := range keys {
		e.note("warning: %s reads %s, which no default and no rule sets (there are %s)", u.Source, u.Key, strings.Join(u.Known, ", "))
	}
}

// object is the input's variable name, nil when absent (rules see it empty).
func (e *explainer) object(name string) map[string]any {
	m, _ := e.vars[name].(map[string]any)
	return m
}

// request is the `request` variable: what a server always fills in (method,
// host, path, query, headers, remote_ip) from --site and --path, and the
// input's request over it.
func (e *explainer) request() map[string]any {
	host := e.opts.site
	if req, err := siteRequest(e.opts.site, e.opts.path, nil); err == nil && e.opts.site != "" {
		host = req.Host
	}
	return e.requestOf(host, e.opts.path)
}

func (e *explainer) requestOf(host, path string) map[string]any {
	if path == "" {
		path = "/"
	}
	r := map[string]any{"method": "GET", "host": host, "path": path, "query": map[string]any{}, "headers": map[string]any{}, "remote_ip": ""}
	maps.Copy(r, e.object("request"))
	return r
}
