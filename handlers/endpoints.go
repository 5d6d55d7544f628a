package handlers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/session"
	"github.com/authgate/caddy-authgate/store"
)

// Auth.js error codes, shown to users on the error page.
const (
	errConfiguration     = "Configuration"
	errAccessDenied      = "AccessDenied"
	errOAuthSignin       = "OAuthSignin"
	errOAuthCallback     = "OAuthCallback"
	errCredentialsSignin = "CredentialsSignin"
	errSessionRequired   = "SessionRequired"
	errVerification      = "Verification"
	errAccountNotLinked  = "OAuthAccountNotLinked"
)

const (
	maxFormBytes = 64 << 10
	stateMaxAge  = 15 * time.Minute
)

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

// serveEndpoint routes /.auth/* requests.
func (rl *realm) serveEndpoint(w http.ResponseWriter, r *http.Request, sub string) error {
	w.Header().Set("Cache-Control", "private, no-store")
	action, arg, _ := strings.Cut(strings.TrimPrefix(sub, "/"), "/")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case action == "signin" && arg == "" && get:
		rl.signinPage(w, r)
	case action == "signin" && arg != "" && post:
		rl.signin(w, r, arg)
	case action == "callback" && arg != "" && (get || post):
		rl.callback(w, r, arg)
	case action == "signout" && arg == "" && get:
		rl.signoutPage(w, r)
	case action == "signout" && arg == "" && post:
		rl.signout(w, r)
	case action == "session" && arg == "" && get:
		rl.sessionJSON(w, r)
	case action == "session" && arg == "" && post:
		rl.updateSession(w, r)
	case action == "csrf" && arg == "" && get:
		token := rl.csrfToken(w, r)
		writeJSON(w, http.StatusOK, map[string]string{"csrfToken": token})
	case action == "providers" && arg == "" && get:
		rl.providersJSON(w, r)
	case action == "error" && arg == "" && get:
		rl.errorPage(w, r, r.URL.Query().Get("error"))
	case action == "verify-request" && arg == "" && get:
		rl.verifyRequestPage(w, r)
	case action == "admin":
		rl.serveAdmin(w, r, arg)
	case action == "verify" && arg == "" && get:
		rl.verify(w, r)
	case action == "jwks.json" && arg == "" && get:
		rl.jwks(w)
	case action == "signin" || action == "callback" || action == "signout" || action == "session" ||
		action == "csrf" || action == "providers" || action == "error" || action == "verify-request" || action == "verify" || action == "jwks.json":
		w.Header().Set("Allow", "GET, POST")
		rl.renderPage(w, http.StatusMethodNotAllowed, pageData{Title: "Method not allowed", Message: "This address does not take that kind of request."})
	default:
		rl.renderPage(w, http.StatusNotFound, pageData{Title: "Not found", Message: "There is no sign-in page at this address."})
	}
	return nil
}

// secure reports whether cookies for r are https-only.
func (rl *realm) secure(r *http.Request) bool {
	// base's scheme, without building the URL: this runs on every request.
	if rl.baseURL != nil {
		return rl.baseURL.Scheme == "https"
	}
	return r.TLS != nil
}

func idx(b bool) int {
	if b {
		return 1
	}
	return 0
}

// base is the origin sign-in URLs and redirects are made against.
func (rl *realm) base(r *http.Request) *url.URL {
	if rl.baseURL != nil {
		return rl.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: r.Host}
}

func (rl *realm) cookieOpts(r *http.Request) session.CookieOptions {
	o := rl.cookie
	o.Secure = rl.secure(r)
	if o.SameSite == http.SameSiteNoneMode {
		o.Secure = true
	}
	return o
}

// hostCookieOpts are for cookies that never leave this host (__Host- prefix).
func (rl *realm) hostCookieOpts(r *http.Request) session.CookieOptions {
	return session.CookieOptions{Path: "/", SameSite: http.SameSiteLaxMode, Secure: rl.secure(r)}
}

// readSession finds the request's session. A missing, tampered, expired, revoked
// or unknown cookie is no session (nil, nil), and a bad one is cleared; an error
// means the store could not be asked (database sessions). A session older than
// update_age is renewed, sliding its expiry. Sessions are cached in process, so a
// valid jwt cookie is decrypted once and a database session read once in a while.
func (rl *realm) readSession(w http.ResponseWriter, r *http.Request) (*sessionState, error) {
	secure := rl.secure(r)
	name := rl.sessionNames[idx(secure)]
	raw, ok := session.ReadChunked(r, name)
	if !ok {
		return nil, nil
	}
	if rl.database {
		return rl.readDatabaseSession(w, r, raw)
	}
	now := rl.now()
	codec := rl.codecs[idx(secure)]
	e := rl.cache.get(raw, now)
	if e == nil {
		claims, current, err := codec.DecodeKey(raw, now)
		if err != nil {
			if ce := rl.logger.Check(zap.DebugLevel, "session cookie rejected"); ce != nil {
				ce.Write(zap.Error(err))
			}
			session.ClearChunked(w, r, name, rl.cookieOpts(r))
			return nil, nil
		}
		e = newTokenEntry(claims)
		// A token of a rotated-out secret is re-issued with the current one below.
		e.stale = !current
		rl.cache.put(raw, e, now)
	}
	if rl.revoked.has(e.sid, now) {
		session.ClearChunked(w, r, name, rl.cookieOpts(r))
		return nil, nil
	}
	key := raw
	if rl.dueForRefresh(e, now) {
		if n := rl.refresh(r.Context(), raw, e, secure); n != nil {
			session.SetChunked(w, r, name, n.token, rl.maxAge, rl.cookieOpts(r))
			e, key = n.entry, n.token
		}
	} else if e.stale || now.Sub(e.iat) >= rl.updateAge {
		if tok, ne, err := rl.issueToken(e.claims, secure, now); err == nil {
			session.SetChunked(w, r, name, tok, rl.maxAge, rl.cookieOpts(r))
			e, key = ne, tok
			rl.recordJWTSession(r.Context(), e)
		} else {
			rl.logger.Error("renewing the session token", zap.Error(err))
		}
	}
	return &sessionState{rl: rl, entry: e, token: e.claims, expires: e.expires, key: key}, nil
}

// endpointSession is readSession for the endpoints: when the store cannot be
// asked it answers 503 itself and reports false; st is nil when signed out.
func (rl *realm) endpointSession(w http.ResponseWriter, r *http.Request) (st *sessionState, ok bool) {
	st, err := rl.readSession(w, r)
	if err != nil {
		_ = rl.unavailable(w, r, err)
		return nil, false
	}
	return st, true
}

// issueToken encodes claims as a new session token and caches it.
func (rl *realm) issueToken(claims map[string]any, secure bool, now time.Time) (string, *tokenEntry, error) {
	codec := rl.codecs[idx(secure)]
	tok, err := codec.Encode(claims, rl.maxAge, now)
	if err != nil {
		return "", nil, err
	}
	// The codec sets iat, exp and jti: read them back for the cache.
	full, err := codec.Decode(tok, now)
	if err != nil {
		return "", nil, err
	}
	e := newTokenEntry(full)
	rl.cache.put(tok, e, now)
	return tok, e, nil
}

// recordJWTSession lists a jwt session under its user in the store (with the
// expiry of its newest token), so that an administrator can see and revoke it.
// The cookie works without the record; a failure is only logged.
func (rl *realm) recordJWTSession(ctx context.Context, e *tokenEntry) {
	sub, _ := e.claims["sub"].(string)
	if sub == "" || e.sid == "" || rl.store == nil {
		return
	}
	s := store.Session{ID: jwtSessionID(e.sid), UserID: sub, Expires: e.expires}
	err := rl.store.CreateSession(ctx, s)
	if errors.Is(err, store.ErrConflict) {
		err = rl.store.UpdateSession(ctx, s)
	}
	if err != nil {
		rl.logger.Error("recording the session for its user", zap.Error(err))
	}
}

// databaseCacheTTL bounds how long a database session is trusted without asking
// the store again; sign-outs on other instances arrive sooner by broadcast.
const databaseCacheTTL = 10 * time.Second

func (rl *realm) readDatabaseSession(w http.ResponseWriter, r *http.Request, raw string) (*sessionState, error) {
	ctx := r.Context()
	now := rl.now()
	key := sessionKey(raw)
	e := rl.cache.get(key, now)
	if e == nil {
		s, err := rl.store.GetSession(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			session.ClearChunked(w, r, rl.sessionNames[idx(rl.secure(r))], rl.cookieOpts(r))
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if e, err = rl.databaseEntry(ctx, s, now); err != nil {
			return nil, err
		}
		rl.cache.put(key, e, now)
	}
	// A database session's iat is when it was last renewed.
	if now.Sub(e.iat) >= rl.updateAge {
		s := store.Session{ID: key, UserID: e.userID, Expires: now.Add(rl.maxAge), Data: e.data}
		if err := rl.store.UpdateSession(ctx, s); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				rl.cache.remove(key)
				return nil, nil
			}
			return nil, err
		}
		session.SetChunked(w, r, rl.sessionNames[idx(rl.secure(r))], raw, rl.maxAge, rl.cookieOpts(r))
		ne, err := rl.databaseEntry(ctx, s, now)
		if err != nil {
			return nil, err
		}
		rl.cache.put(key, ne, now)
		e = ne
	}
	return &sessionState{rl: rl, entry: e, token: e.claims, expires: e.expires, key: key}, nil
}

// databaseEntry makes the cache entry of a stored session, with its user.
func (rl *realm) databaseEntry(ctx context.Context, s store.Session, now time.Time) (*tokenEntry, error) {
	claims := make(map[string]any, len(s.Data)+2)
	for k, v := range s.Data {
		claims[k] = v
	}
	claims["exp"] = float64(s.Expires.Unix())
	claims["iat"] = float64(s.Expires.Add(-rl.maxAge).Unix())
	e := newTokenEntry(claims)
	e.userID, e.data = s.UserID, s.Data
	e.cacheUntil = now.Add(databaseCacheTTL)
	if u, err := rl.store.GetUser(ctx, s.UserID); err == nil {
		e.user = storeUserMap(u)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return e, nil
}

// sessionKey is what the store keeps of a database session's cookie value.
func sessionKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// startSession sets the cookie of a new session holding claims: the encrypted
// token itself (jwt), or the id of a stored session (database). The session is
// listed under its user in the store, for administrators.
func (rl *realm) startSession(w http.ResponseWriter, r *http.Request, claims map[string]any) error {
	ctx := r.Context()
	secure := rl.secure(r)
	now := rl.now()
	sub, _ := claims["sub"].(string)
	var value string
	if rl.database {
		value = randomString()
		if err := rl.store.CreateSession(ctx, store.Session{ID: sessionKey(value), UserID: sub, Expires: now.Add(rl.maxAge), Data: claims}); err != nil {
			return err
		}
	} else {
		if sid, _ := claims["sid"].(string); sid == "" {
			claims["sid"] = randomString()
		}
		tok, e, err := rl.issueToken(claims, secure, now)
		if err != nil {
			return err
		}
		value = tok
		rl.recordJWTSession(ctx, e)
	}
	session.SetChunked(w, r, rl.sessionNames[idx(secure)], value, rl.maxAge, rl.cookieOpts(r))
	return nil
}

func numericTime(v any) time.Time {
	switch n := v.(type) {
	case float64:
		return time.Unix(int64(n), 0)
	case int64:
		return time.Unix(n, 0)
	case int:
		return time.Unix(int64(n), 0)
	}
	return time.Time{}
}

// stripAuthCookies removes authgate's own cookies from the request, so the
// upstream never sees the session token. It edits the Cookie header's text
// rather than re-serializing parsed cookies, so that the application's cookies
// arrive as the browser sent them, even those net/http would unquote or reject.
func (rl *realm) stripAuthCookies(r *http.Request) {
	lines := r.Header["Cookie"]
	found := false
	for _, line := range lines {
		for rest := line; rest != "" && !found; {
			var pair string
			pair, rest, _ = strings.Cut(rest, ";")
			name, _, _ := strings.Cut(strings.TrimSpace(pair), "=")
			found = rl.isAuthCookie(name)
		}
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, line := range lines {
		for rest := line; rest != ""; {
			var pair string
			pair, rest, _ = strings.Cut(rest, ";")
			pair = strings.TrimSpace(pair)
			if name, _, _ := strings.Cut(pair, "="); pair == "" || rl.isAuthCookie(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(pair)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

func (rl *realm) isAuthCookie(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "__Secure-"), "__Host-")
	if name == csrfCookieName || name == stateCookieName {
		return true
	}
	chunk, ok := strings.CutPrefix(name, rl.cookieName)
	if !ok {
		return false
	}
	if chunk == "" {
		return true
	}
	chunk, ok = strings.CutPrefix(chunk, ".")
	return ok && chunk != "" && strings.Trim(chunk, "0123456789") == ""
}

// csrfToken returns the CSRF token of r's cookie, or issues a new one.
func (rl *realm) csrfToken(w http.ResponseWriter, r *http.Request) string {
	name := session.HostName(csrfCookieName, rl.secure(r))
	if c, err := r.Cookie(name); err == nil {
		if tok, ok := rl.csrf.FromCookie(c.Value); ok {
			return tok
		}
	}
	tok, val := rl.csrf.Issue()
	session.SetChunked(w, r, name, val, 0, rl.hostCookieOpts(r))
	return tok
}

// checkCSRF verifies the double-submit token of a form POST.
func (rl *realm) checkCSRF(r *http.Request) bool {
	return rl.checkCSRFToken(r, r.PostForm.Get("csrfToken"))
}

// checkCSRFToken verifies a submitted CSRF token against the request's cookie.
func (rl *realm) checkCSRFToken(r *http.Request, submitted string) bool {
	c, err := r.Cookie(session.HostName(csrfCookieName, rl.secure(r)))
	if err != nil {
		return false
	}
	return rl.csrf.Verify(c.Value, submitted)
}

// parseForm reads a bounded POST form.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

// fail redirects to the error page with an Auth.js error code; detail goes to the log only.
func (rl *realm) fail(w http.ResponseWriter, r *http.Request, code string, detail error, fields ...zap.Field) {
	fields = append(fields, zap.String("error_code", code), zap.String("path", r.URL.Path))
	if detail != nil {
		fields = append(fields, zap.Error(detail))
	}
	rl.logger.Warn("sign-in failed", fields...)
	http.Redirect(w, r, rl.basePath+"/error?error="+url.QueryEscape(code), http.StatusFound)
}

// callbackURL is the redirect target a request asks for, checked by the redirect callback.
func (rl *realm) callbackURL(r *http.Request, raw string) string {
	base := rl.base(r)
	if raw == "" {
		return base.String() + "/"
	}
	u, err := rl.cb.Redirect(r.Context(), raw, base, requestVars(r))
	if err != nil {
		rl.logger.Error("redirect callback failed; using the base URL", zap.Error(err))
	}
	return u
}

// redirectURI is the OAuth redirect URI for provider id.
func (rl *realm) redirectURI(r *http.Request, id string) string {
	return rl.base(r).String() + rl.basePath + "/callback/" + url.PathEscape(id)
}

// provider finds a provider by id, or answers 404.
func (rl *realm) provider(w http.ResponseWriter, id string) (providers.Provider, bool) {
	p, ok := rl.byID[id]
	if !ok {
		rl.renderPage(w, http.StatusNotFound, pageData{Title: "Unknown provider", Message: "There is no sign-in provider by that name."})
	}
	return p, ok
}

// signin starts a sign-in: POST /signin/{provider}.
func (rl *realm) signin(w http.ResponseWriter, r *http.Request, id string) {
	if err := parseForm(w, r); err != nil {
		rl.fail(w, r, errOAuthSignin, err)
		return
	}
	p, ok := rl.provider(w, id)
	if !ok {
		return
	}
	if !rl.checkCSRF(r) {
		rl.csrfFailed(w, r)
		return
	}
	if ep, ok := p.(*providers.Email); ok {
		rl.emailSignin(w, r, ep)
		return
	}
	op, ok := p.(providers.OAuth)
	if !ok {
		// Credentials are POSTed to /callback/{id}; a sign-in POST shows the form.
		http.Redirect(w, r, rl.basePath+"/signin?callbackUrl="+url.QueryEscape(r.PostForm.Get("callbackUrl")), http.StatusFound)
		return
	}
	st := map[string]any{
		"provider":      id,
		"state":         randomString(),
		"code_verifier": oauth2.GenerateVerifier(),
		"callback_url":  rl.callbackURL(r, r.PostForm.Get("callbackUrl")),
	}
	nonce := ""
	if op.UsesNonce() {
		nonce = randomString()
		st["nonce"] = nonce
	}
	target, err := op.AuthCodeURL(r.Context(), rl.redirectURI(r, id), st["state"].(string), st["code_verifier"].(string), nonce)
	if err != nil {
		rl.fail(w, r, errOAuthSignin, err, zap.String("provider", id))
		return
	}
	secure := rl.secure(r)
	sealed, err := rl.stateCodecs[idx(secure)].Encode(st, stateMaxAge, rl.now())
	if err != nil {
		rl.fail(w, r, errOAuthSignin, err, zap.String("provider", id))
		return
	}
	session.SetChunked(w, r, session.HostName(stateCookieName, secure), sealed, stateMaxAge, rl.hostCookieOpts(r))
	http.Redirect(w, r, target, http.StatusFound)
}

// callback finishes a sign-in: GET/POST /callback/{provider}.
func (rl *realm) callback(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method == http.MethodPost {
		if err := parseForm(w, r); err != nil {
			rl.fail(w, r, errOAuthCallback, err)
			return
		}
	}
	p, ok := rl.provider(w, id)
	if !ok {
		return
	}
	switch p := p.(type) {
	case providers.OAuth:
		rl.oauthCallback(w, r, p)
	case *providers.Credentials:
		rl.credentialsCallback(w, r, p)
	case *providers.Email:
		rl.emailCallback(w, r, p)
	default:
		rl.fail(w, r, errConfiguration, errors.New("provider has no callback"), zap.String("provider", id))
	}
}

func (rl *realm) oauthCallback(w http.ResponseWriter, r *http.Request, p providers.OAuth) {
	secure := rl.secure(r)
	name := session.HostName(stateCookieName, secure)
	raw, ok := session.ReadChunked(r, name)
	// The state cookie is single-use: cleared whatever happens next.
	session.ClearChunked(w, r, name, rl.hostCookieOpts(r))
	field := zap.String("provider", p.ID())
	if !ok {
		rl.fail(w, r, errOAuthCallback, errors.New("no state cookie: the sign-in was not started here, expired, or was already finished"), field)
		return
	}
	st, err := rl.stateCodecs[idx(secure)].Decode(raw, rl.now())
	if err != nil {
		rl.fail(w, r, errOAuthCallback, errors.New("state cookie invalid or expired"), field)
		return
	}
	if prov, _ := st["provider"].(string); prov != p.ID() {
		rl.fail(w, r, errOAuthCallback, errors.New("state was issued for another provider"), field)
		return
	}
	form := r.URL.Query()
	if r.Method == http.MethodPost {
		form = r.Form
	}
	if e := form.Get("error"); e != "" {
		rl.fail(w, r, errOAuthCallback, errors.New("provider answered with an error: "+truncate(e, 100)), field)
		return
	}
	// RFC 9207: an authorization response naming another issuer is a mix-up
	// attack, and so is one without iss from a provider whose metadata promises it.
	if ip, ok := p.(interface {
		Issuer() string
		IssuerRequired() bool
	}); ok {
		switch iss := form.Get("iss"); {
		case iss != "" && iss != ip.Issuer():
			rl.fail(w, r, errOAuthCallback, errors.New("authorization response from another issuer: "+truncate(iss, 100)), field)
			return
		case iss == "" && ip.IssuerRequired():
			rl.fail(w, r, errOAuthCallback, errors.New("authorization response without iss, which the provider's metadata promises"), field)
			return
		}
	}
	want, _ := st["state"].(string)
	if got := form.Get("state"); want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		rl.fail(w, r, errOAuthCallback, errors.New("state does not match"), field)
		return
	}
	verifier, _ := st["code_verifier"].(string)
	nonce, _ := st["nonce"].(string)
	id, err := p.Callback(r.Context(), rl.redirectURI(r, p.ID()), form, verifier, nonce)
	if err != nil {
		rl.fail(w, r, errOAuthCallback, err, field)
		return
	}
	cb, _ := st["callback_url"].(string)
	rl.finishSignIn(w, r, id, nil, cb)
}

func (rl *realm) credentialsCallback(w http.ResponseWriter, r *http.Request, p *providers.Credentials) {
	if r.Method != http.MethodPost {
		http.Redirect(w, r, rl.basePath+"/signin", http.StatusFound)
		return
	}
	if !rl.checkCSRF(r) {
		rl.csrfFailed(w, r)
		return
	}
	callbackURL := rl.callbackURL(r, r.PostForm.Get("callbackUrl"))
	fields := make(map[string]string, len(r.PostForm))
	creds := make(map[string]any, len(r.PostForm))
	for k, v := range r.PostForm {
		if k == "csrfToken" {
			continue
		}
		val := strings.Join(v, ",")
		if k != "callbackUrl" {
			fields[k] = val
		}
		if k != "password" {
			creds[k] = val
		}
	}
	user, err := p.AuthorizeFields(r.Context(), fields)
	if errors.Is(err, providers.ErrCredentials) {
		rl.logger.Info("credentials sign-in refused", zap.String("provider", p.ID()), zap.String("path", r.URL.Path))
		http.Redirect(w, r, rl.basePath+"/signin?error="+errCredentialsSignin+"&callbackUrl="+url.QueryEscape(callbackURL), http.StatusFound)
		return
	}
	if err != nil {
		rl.fail(w, r, errConfiguration, err, zap.String("provider", p.ID()))
		return
	}
	id := &providers.Identity{
		User:    user,
		Account: map[string]any{"provider": p.ID(), "type": providers.TypeCredentials, "provider_account_id": user["id"]},
	}
	rl.finishSignIn(w, r, id, creds, callbackURL)
}

// finishSignIn runs the sign_in and jwt callbacks, sets the session cookie and
// redirects to the (checked) callback URL.
func (rl *realm) finishSignIn(w http.ResponseWriter, r *http.Request, id *providers.Identity, creds map[string]any, callbackURL string) {
	prov := zap.Any("provider", id.Account["provider"])
	if !rl.signInAllowed(w, r, callbacks.SignInInput{
		User: rl.knownUser(r, id), Account: id.Account, Profile: id.Profile, Credentials: creds, Request: requestVars(r),
	}, prov) {
		return
	}
	user, isNew, err := rl.resolveUser(r, id)
	if errors.Is(err, store.ErrAccountNotLinked) {
		rl.fail(w, r, errAccountNotLinked, err, prov)
		return
	}
	if err != nil {
		rl.fail(w, r, errConfiguration, err, prov)
		return
	}
	trigger := "sign_in"
	if isNew {
		trigger = "sign_up"
	}
	var token map[string]any
	if rl.cb.RefreshAccessToken() {
		token = oauthClaims(id.Account)
	}
	claims, err := rl.cb.JWT(r.Context(), callbacks.JWTInput{
		Token: token, User: user, Account: id.Account, Profile: id.Profile, IsNewUser: isNew, Trigger: trigger, Request: requestVars(r),
	})
	if err != nil {
		rl.fail(w, r, errConfiguration, err, prov)
		return
	}
	if err := rl.startSession(w, r, claims); err != nil {
		rl.fail(w, r, errConfiguration, err, prov)
		return
	}
	rl.logger.Info("signed in", prov, zap.Any("user_id", claims["sub"]))
	http.Redirect(w, r, rl.callbackURL(r, callbackURL), http.StatusFound)
}

// signInAllowed runs the sign_in callback and, unless it allows the sign-in,
// answers: the redirect it asked for, AccessDenied, or Configuration when a rule
// failed.
func (rl *realm) signInAllowed(w http.ResponseWriter, r *http.Request, in callbacks.SignInInput, field zap.Field) bool {
	dec, err := rl.cb.SignIn(r.Context(), in)
	switch {
	case err != nil:
		rl.fail(w, r, errConfiguration, err, field)
	case dec.Redirect != "":
		http.Redirect(w, r, rl.callbackURL(r, dec.Redirect), http.StatusFound)
	case !dec.Allow:
		rl.fail(w, r, errAccessDenied, nil, field, zap.String("rule", dec.Source))
	default:
		return true
	}
	return false
}

// knownUser is the user sign_in sees: as in Auth.js, the stored user when the
// provider account is linked already, else the provider's description.
func (rl *realm) knownUser(r *http.Request, id *providers.Identity) map[string]any {
	typ, _ := id.Account["type"].(string)
	if typ == providers.TypeCredentials || typ == providers.TypeEmail || rl.store == nil {
		return id.User
	}
	provider, _ := id.Account["provider"].(string)
	accountID, _ := id.Account["provider_account_id"].(string)
	if u, err := rl.store.GetUserByAccount(r.Context(), provider, accountID); err == nil {
		return storeUserMap(u)
	}
	return id.User
}

// resolveUser finds or creates the stored user an OAuth, OIDC or email sign-in
// belongs to, so the user keeps one id (the token's sub) across sign-ins and
// providers. Credentials sign-ins are the credentials check's own users, as in
// Auth.js, and do not touch the store.
func (rl *realm) resolveUser(r *http.Request, id *providers.Identity) (map[string]any, bool, error) {
	typ, _ := id.Account["type"].(string)
	if typ == providers.TypeCredentials {
		return id.User, false, nil
	}
	provider, _ := id.Account["provider"].(string)
	accountID, _ := id.Account["provider_account_id"].(string)
	linking := false
	if p, ok := rl.byID[provider].(providers.OAuth); ok {
		linking = p.AllowsEmailLinking()
	}
	name, _ := id.User["name"].(string)
	email, _ := id.User["email"].(string)
	image, _ := id.User["image"].(string)
	u, isNew, err := store.ResolveUser(r.Context(), rl.store, store.SignIn{
		Provider: provider, ProviderAccountID: accountID, Type: typ,
		Name: name, Email: email, Image: image,
		EmailVerified: typ == providers.TypeEmail, AllowEmailLinking: linking,
	})
	if err != nil {
		return nil, false, err
	}
	return storeUserMap(u), isNew, nil
}

func (rl *realm) csrfFailed(w http.ResponseWriter, r *http.Request) {
	rl.logger.Warn("POST without a valid CSRF token refused", zap.String("path", r.URL.Path))
	rl.renderPage(w, http.StatusForbidden, pageData{
		Title:   "Request refused",
		Message: "This form has expired or did not come from this site. Go back, reload the page and try again.",
		Link:    rl.basePath + "/signin", LinkText: "Sign in",
	})
}

// signout: POST /signout clears the session and redirects.
func (rl *realm) signout(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil || !rl.checkCSRF(r) {
		rl.csrfFailed(w, r)
		return
	}
	if st, err := rl.readSession(w, r); st != nil {
		if err := rl.endSession(r.Context(), st); err != nil {
			rl.logger.Error("ending the session in the store failed; its cookie is cleared", zap.Error(err))
		}
	} else if err != nil {
		rl.logger.Error("reading the session to sign out failed; its cookie is cleared", zap.Error(err))
	}
	session.ClearChunked(w, r, rl.sessionNames[idx(rl.secure(r))], rl.cookieOpts(r))
	http.Redirect(w, r, rl.callbackURL(r, r.PostForm.Get("callbackUrl")), http.StatusFound)
}

// sessionJSON: GET /session.
func (rl *realm) sessionJSON(w http.ResponseWriter, r *http.Request) {
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	if st.entry.failedRefresh {
		// Signed out, and the client may learn why (Auth.js's refresh guide).
		writeJSON(w, http.StatusOK, map[string]any{"error": errRefresh})
		return
	}
	st.writeJSON(w, r)
}

// writeJSON answers with the session, or {} (signed out) when the session
// callback fails: a client must never take a broken session for a good one.
func (s *sessionState) writeJSON(w http.ResponseWriter, r *http.Request) {
	sess, err := s.session(r)
	if err != nil {
		s.rl.logger.Error("session callback failed; answering as signed out", zap.Error(err))
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, sess)
}

// updateSession: POST /session, Auth.js's update(data). The body is JSON
// {"csrfToken": …, "data": …} or a form with csrfToken and data (JSON). The jwt
// callback runs with trigger "update" and session = data; the cookie is re-issued.
func (rl *realm) updateSession(w http.ResponseWriter, r *http.Request) {
	var body struct {
		CSRFToken string `json:"csrfToken"`
		Data      any    `json:"data"`
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
		if err := dec.Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body"})
			return
		}
	} else {
		if err := parseForm(w, r); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid form body"})
			return
		}
		body.CSRFToken = r.PostForm.Get("csrfToken")
		if d := r.PostForm.Get("data"); d != "" {
			if err := json.Unmarshal([]byte(d), &body.Data); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "data is not JSON"})
				return
			}
		}
	}
	if !rl.checkCSRFToken(r, body.CSRFToken) {
		rl.logger.Warn("POST without a valid CSRF token refused", zap.String("path", r.URL.Path))
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "invalid CSRF token"})
		return
	}
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	claims, err := rl.cb.JWT(r.Context(), callbacks.JWTInput{Token: st.token, Trigger: "update", Session: body.Data, Request: requestVars(r)})
	if err != nil {
		rl.logger.Error("jwt callback failed on session update", zap.Error(err))
		writeJSON(w, http.StatusForbidden, map[string]string{"error": errConfiguration})
		return
	}
	now := rl.now()
	if rl.database {
		s := store.Session{ID: st.key, UserID: st.entry.userID, Expires: now.Add(rl.maxAge), Data: claims}
		if err := rl.store.UpdateSession(r.Context(), s); err != nil {
			rl.logger.Error("storing the updated session", zap.Error(err))
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "SessionUnavailable"})
			return
		}
		rl.cache.remove(st.key)
		rl.broadcast(r.Context(), "session "+st.key)
		raw, _ := session.ReadChunked(r, rl.sessionNames[idx(rl.secure(r))])
		session.SetChunked(w, r, rl.sessionNames[idx(rl.secure(r))], raw, rl.maxAge, rl.cookieOpts(r))
	} else {
		// The new token continues the session: same sid, so a sign-out still ends it.
		if _, ok := claims["sid"]; !ok && st.entry != nil {
			claims["sid"] = st.entry.sid
		}
		if err := rl.startSession(w, r, claims); err != nil {
			rl.logger.Error("encoding the updated session", zap.Error(err))
			writeJSON(w, http.StatusForbidden, map[string]string{"error": errConfiguration})
			return
		}
	}
	st = &sessionState{rl: rl, token: claims, expires: now.Add(rl.maxAge)}
	st.writeJSON(w, r)
}

// verify: GET /verify, the answer for another proxy's forward-auth request: 200
// with the identity headers for a valid session, 401 otherwise.
func (rl *realm) verify(w http.ResponseWriter, r *http.Request) {
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil || st.entry.failedRefresh {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": errSessionRequired})
		return
	}
	for i, name := range defaultHeaderNames {
		if v := st.entryDefault(i); v != nil {
			w.Header()[name] = v
		}
	}
	w.WriteHeader(http.StatusOK)
}

// jwks: GET /jwks.json, the public keys of the upstream assertions.
func (rl *realm) jwks(w http.ResponseWriter) {
	b, err := rl.asserter.JWKS()
	if err != nil {
		rl.logger.Error("encoding the key set", zap.Error(err))
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": errConfiguration})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

// providersJSON: GET /providers, in Auth.js's shape.
func (rl *realm) providersJSON(w http.ResponseWriter, r *http.Request) {
	base := rl.base(r).String() + rl.basePath
	out := make(map[string]any, len(rl.providers))
	for _, p := range rl.providers {
		out[p.ID()] = map[string]string{
			"id":          p.ID(),
			"name":        p.Name(),
			"type":        p.Type(),
			"signinUrl":   base + "/signin/" + url.PathEscape(p.ID()),
			"callbackUrl": base + "/callback/" + url.PathEscape(p.ID()),
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
