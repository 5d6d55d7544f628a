package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/session"
	"github.com/authgate/caddy-authgate/store"
)

// origin decides which scheme and host a request is served on: whether its
// cookies are https-only, and the base URL sign-in URLs and redirects are made
// against.
type origin struct {
	baseURL *url.URL // nil: each request's own origin
	cookie  session.CookieOptions
}

// secure reports whether cookies for r are https-only.
func (o *origin) secure(r *http.Request) bool {
	// base's scheme, without building the URL: this runs on every request.
	if o.baseURL != nil {
		return o.baseURL.Scheme == "https"
	}
	if r.TLS != nil {
		return true
	}
	proto, _ := forwarded(r)
	return proto == "https"
}

// base is the origin sign-in URLs and redirects are made against: the realm's
// url, else the request's own origin, as a TLS-terminating proxy in front saw
// it when Caddy trusts that proxy (trusted_proxies).
func (o *origin) base(r *http.Request) *url.URL {
	if o.baseURL != nil {
		return o.baseURL
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	proto, fwdHost := forwarded(r)
	if proto != "" {
		scheme = proto
	}
	if fwdHost != "" {
		host = fwdHost
	}
	return &url.URL{Scheme: scheme, Host: host}
}

// forwarded is the scheme and host a proxy in front of Caddy says the client
// used (X-Forwarded-Proto, X-Forwarded-Host), only when Caddy's
// trusted_proxies trusts the peer, as Caddy itself decides for {client_ip};
// values that are not a plain scheme or host are ignored.
func forwarded(r *http.Request) (proto, host string) {
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return "", ""
	}
	switch p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); strings.ToLower(strings.TrimSpace(p)) {
	case "https":
		proto = "https"
	case "http":
		proto = "http"
	}
	h, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
	if h = strings.TrimSpace(h); h != "" && !strings.ContainsAny(h, "/\\@?#%\" \t") {
		host = h
	}
	return proto, host
}

// cookieOpts are the session cookie's attributes for r.
func (o *origin) cookieOpts(r *http.Request) session.CookieOptions {
	c := o.cookie
	c.Secure = o.secure(r)
	if c.SameSite == http.SameSiteNoneMode {
		c.Secure = true
	}
	return c
}

// hostCookieOpts are for cookies that never leave this host (__Host- prefix).
func (o *origin) hostCookieOpts(r *http.Request) session.CookieOptions {
	return session.CookieOptions{Path: "/", SameSite: http.SameSiteLaxMode, Secure: o.secure(r)}
}

func idx(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sessions is the one place a session is read, issued, renewed and ended. It
// owns the session codecs, the token cache, the revocations, the refresh of
// provider tokens and the store.
type sessions struct {
	origin     *origin
	cookieName string    // without prefix
	names      [2]string // the cookie's name by whether the request is secure
	// codecs are indexed by whether the request is secure: the cookie name, and
	// so the key derivation salt, differs.
	codecs    [2]*session.Codec
	cache     *tokenCache
	revoked   *revocations
	refreshes singleflight.Group
	// refreshOn: jwt { refresh_access_token }; oauth finds the provider of a token.
	refreshOn bool
	oauth     func(id string) (providers.OAuth, bool)
	// database: sessions live in the store, the cookie holds their id.
	database  bool
	maxAge    time.Duration
	updateAge time.Duration
	store     store.Store // set when the app starts
	logger    *zap.Logger
	now       func() time.Time
}

// sessionState is the session of one request.
type sessionState struct {
	cb    *callbacks.Callbacks
	entry *tokenEntry // nil for a token not in the cache
	// token is the claims of a session without an entry (claims() reads it).
	token   map[string]any
	expires time.Time
	key     string // the cache key: the cookie value (jwt) or the session's hash (database); "" for a bearer token

	// the session callback's result, computed at most once per request
	sess     map[string]any
	sessErr  error
	sessDone bool
}

// read finds the request's session. A missing, tampered, expired, revoked or
// unknown cookie is no session (nil, nil), and a bad one is cleared; an error
// means the store could not be asked (database sessions). A session older than
// update_age is renewed, sliding its expiry. Sessions are cached in process, so a
// valid jwt cookie is decrypted once and a database session read once in a while.
func (s *sessions) read(w http.ResponseWriter, r *http.Request, cb *callbacks.Callbacks) (*sessionState, error) {
	return s.readInto(new(sessionState), w, r, cb)
}

// readInto is read into dst, which it returns when there is a session.
func (s *sessions) readInto(dst *sessionState, w http.ResponseWriter, r *http.Request, cb *callbacks.Callbacks) (*sessionState, error) {
	secure := s.origin.secure(r)
	raw, ok := session.ReadChunked(r, s.names[idx(secure)])
	if !ok {
		return nil, nil
	}
	var e *tokenEntry
	var key string
	var err error
	if s.database {
		e, key, err = s.readDatabase(w, r, raw)
	} else {
		e, key = s.readJWT(w, r, raw, secure)
	}
	if e == nil || err != nil {
		return nil, err
	}
	*dst = sessionState{cb: cb, entry: e, expires: e.expiry(), key: key}
	return dst, nil
}

// readJWT decodes (or finds in the cache) a jwt session token, checks its
// revocation, and refreshes or renews it when due.
func (s *sessions) readJWT(w http.ResponseWriter, r *http.Request, raw string, secure bool) (*tokenEntry, string) {
	now := s.now()
	key := s.cache.keyOf(raw)
	e := s.cache.lookup(key, now)
	if e == nil {
		t, current, err := s.codecs[idx(secure)].DecodeToken(raw, now)
		if err != nil {
			if ce := s.logger.Check(zap.DebugLevel, "session cookie rejected"); ce != nil {
				ce.Write(zap.Error(err))
			}
			s.clearCookie(w, r)
			return nil, ""
		}
		e = newDecodedEntry(&t)
		// A token of a rotated-out secret is re-issued with the current one below.
		e.stale = !current
		s.cache.store(key, e, now)
	}
	if s.revoked.has(e.sid, now) {
		s.clearCookie(w, r)
		return nil, ""
	}
	if s.dueForRefresh(e, now) {
		if n := s.refresh(r.Context(), raw, e, secure); n != nil {
			s.setCookie(w, r, n.token)
			return n.entry, n.token
		}
	} else if e.stale || e.age(now) >= s.updateAge {
		tok, ne, err := s.issue(e.claimsMap(), secure, now)
		if err != nil {
			s.logger.Error("renewing the session token", zap.Error(err))
			return e, raw
		}
		s.cache.replace(key, tok, ne, now) // the browser sends the new token from now on
		s.setCookie(w, r, tok)
		s.record(r.Context(), ne)
		return ne, tok
	}
	return e, raw
}

// databaseCacheTTL bounds how long a database session is trusted without asking
// the store again; sign-outs on other instances arrive sooner by broadcast.
const databaseCacheTTL = 10 * time.Second

// readDatabase finds a database session by its cookie value, renewing it when due.
func (s *sessions) readDatabase(w http.ResponseWriter, r *http.Request, raw string) (*tokenEntry, string, error) {
	ctx := r.Context()
	now := s.now()
	key := sessionKey(raw)
	e := s.cache.get(key, now)
	if e == nil {
		stored, err := s.store.GetSession(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			s.clearCookie(w, r)
			return nil, "", nil
		}
		if err != nil {
			return nil, "", err
		}
		if e, err = s.databaseEntry(ctx, stored, now); err != nil {
			return nil, "", err
		}
		s.cache.put(key, e, now)
	}
	// A database session's iat is when it was last renewed.
	if e.age(now) >= s.updateAge {
		renewed := store.Session{ID: key, UserID: e.db.userID, Expires: now.Add(s.maxAge), Data: e.db.data}
		if err := s.store.UpdateSession(ctx, renewed); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				s.cache.remove(key)
				return nil, "", nil
			}
			return nil, "", err
		}
		s.setCookie(w, r, raw)
		ne, err := s.databaseEntry(ctx, renewed, now)
		if err != nil {
			return nil, "", err
		}
		s.cache.put(key, ne, now)
		e = ne
	}
	return e, key, nil
}

// databaseEntry makes the cache entry of a stored session, with its user.
func (s *sessions) databaseEntry(ctx context.Context, stored store.Session, now time.Time) (*tokenEntry, error) {
	claims := make(map[string]any, len(stored.Data)+2)
	for k, v := range stored.Data {
		claims[k] = v
	}
	claims["exp"] = float64(stored.Expires.Unix())
	claims["iat"] = float64(stored.Expires.Add(-s.maxAge).Unix())
	e := newTokenEntry(claims)
	e.db = &dbRecord{userID: stored.UserID, data: stored.Data}
	e.cacheUntil = now.Add(databaseCacheTTL).UnixNano()
	if u, err := s.store.GetUser(ctx, stored.UserID); err == nil {
		e.db.user = storeUserMap(u)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	e.size.Store(entrySize(e))
	return e, nil
}

// sessionKey is what the store keeps of a database session's cookie value.
func sessionKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// maxTokenBytes bounds a session token: its cookie, chunked, must stay under
// what servers accept in request headers (Caddy answers 431 past ~1 MB of
// headers, many proxies past 8–16 KB), or the user could not even sign out.
const maxTokenBytes = 12 << 10

// errTokenTooLarge refuses a session token whose cookie would exceed maxTokenBytes.
var errTokenTooLarge = fmt.Errorf("the session would exceed %d KB: it is not issued (keep large data out of the token)", maxTokenBytes>>10)

// issue encodes claims as a new session token and caches it.
func (s *sessions) issue(claims map[string]any, secure bool, now time.Time) (string, *tokenEntry, error) {
	codec := s.codecs[idx(secure)]
	tok, err := codec.Encode(claims, s.maxAge, now)
	if err != nil {
		return "", nil, err
	}
	if len(tok) > maxTokenBytes {
		return "", nil, errTokenTooLarge
	}
	// The codec sets iat, exp and jti: read them back for the cache.
	full, err := codec.Decode(tok, now)
	if err != nil {
		return "", nil, err
	}
	e := newTokenEntry(full)
	s.cache.put(tok, e, now)
	return tok, e, nil
}

// start sets the cookie of a new session holding claims: the encrypted token
// itself (jwt), or the id of a stored session (database). The session is listed
// under its user in the store, for administrators.
func (s *sessions) start(w http.ResponseWriter, r *http.Request, claims map[string]any) error {
	ctx := r.Context()
	secure := s.origin.secure(r)
	now := s.now()
	var value string
	if s.database {
		sub, _ := claims["sub"].(string)
		if size, err := jsonSize(claims); err != nil || size > maxTokenBytes {
			return errTokenTooLarge
		}
		value = randomString()
		if err := s.store.CreateSession(ctx, store.Session{ID: sessionKey(value), UserID: sub, Expires: now.Add(s.maxAge), Data: claims}); err != nil {
			return err
		}
	} else {
		if sid, _ := claims["sid"].(string); sid == "" {
			claims["sid"] = randomString()
		}
		tok, e, err := s.issue(claims, secure, now)
		if err != nil {
			return err
		}
		value = tok
		s.record(ctx, e)
	}
	s.setCookie(w, r, value)
	return nil
}

// update replaces the claims of the request's session (POST /session): a
// database session is rewritten in the store, a jwt session gets a new token
// continuing it.
func (s *sessions) update(w http.ResponseWriter, r *http.Request, st *sessionState, claims map[string]any) error {
	if !s.database {
		// The new token continues the session: same sid, so a sign-out still ends it.
		if _, ok := claims["sid"]; !ok && st.entry != nil {
			claims["sid"] = st.entry.sid
		}
		if err := s.start(w, r, claims); err != nil {
			return err
		}
		// The browser now holds the new token: the old one's entry would only
		// take room until evicted.
		s.cache.remove(st.key)
		return nil
	}
	ctx := r.Context()
	if size, err := jsonSize(claims); err != nil || size > maxTokenBytes {
		return errTokenTooLarge
	}
	stored := store.Session{ID: st.key, UserID: st.entry.db.userID, Expires: s.now().Add(s.maxAge), Data: claims}
	if err := s.store.UpdateSession(ctx, stored); err != nil {
		return err
	}
	s.forgetDatabaseSession(ctx, st.key)
	raw, _ := session.ReadChunked(r, s.names[idx(s.origin.secure(r))])
	s.setCookie(w, r, raw)
	return nil
}

// jsonSize is how many bytes claims take as JSON: a database session's data is
// held to the same bound as a token.
func jsonSize(claims map[string]any) (int, error) {
	b, err := json.Marshal(claims)
	return len(b), err
}

// record lists a jwt session under its user in the store (with the expiry of
// its newest token), so that an administrator can see and revoke it. The
// cookie works without the record; a failure is only logged.
func (s *sessions) record(ctx context.Context, e *tokenEntry) {
	sub, _ := e.claimsMap()["sub"].(string)
	if sub == "" || e.sid == "" || s.store == nil {
		return
	}
	rec := store.Session{ID: jwtSessionID(e.sid), UserID: sub, Expires: e.expiry()}
	// What back-channel logout looks for: the provider and its session id.
	for _, k := range [...]string{claimProvider, claimIDPSid} {
		if v, ok := e.claimsMap()[k].(string); ok && v != "" {
			if rec.Data == nil {
				rec.Data = map[string]any{}
			}
			rec.Data[k] = v
		}
	}
	err := s.store.CreateSession(ctx, rec)
	if errors.Is(err, store.ErrConflict) {
		err = s.store.UpdateSession(ctx, rec)
	}
	if err != nil {
		s.logger.Error("recording the session for its user", zap.Error(err))
	}
}

// jwtPrefix marks the store records that list jwt sessions under their users.
const jwtPrefix = "jwt:"

// jwtSessionID names the store record that lists a jwt session under its user,
// so that an administrator can see and revoke it.
func jwtSessionID(sid string) string { return jwtPrefix + sid }

// setCookie sets the session cookie to value.
func (s *sessions) setCookie(w http.ResponseWriter, r *http.Request, value string) {
	session.SetChunked(w, r, s.names[idx(s.origin.secure(r))], value, s.maxAge, s.origin.cookieOpts(r))
}

// clearCookie clears the session cookie, every chunk of it.
func (s *sessions) clearCookie(w http.ResponseWriter, r *http.Request) {
	session.ClearChunked(w, r, s.names[idx(s.origin.secure(r))], s.origin.cookieOpts(r))
}

// isAuthCookie reports whether a cookie name is one of authgate's: the session
// cookie or one of its chunks, the CSRF or the state cookie, with or without prefix.
func (s *sessions) isAuthCookie(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "__Secure-"), "__Host-")
	if name == csrfCookieName || name == stateCookieName {
		return true
	}
	chunk, ok := strings.CutPrefix(name, s.cookieName)
	if !ok {
		return false
	}
	if chunk == "" {
		return true
	}
	chunk, ok = strings.CutPrefix(chunk, ".")
	return ok && chunk != "" && strings.Trim(chunk, "0123456789") == ""
}

// claims is the session token's claims, shared: nothing may modify them.
func (st *sessionState) claims() map[string]any {
	if st.entry != nil {
		return st.entry.claimsMap()
	}
	return st.token
}

// defaultHeaders are the session's default identity headers (sub, email,
// name), shared: nothing may modify them.
func (st *sessionState) defaultHeaders() []headerValue {
	if st.entry != nil {
		return st.entry.defaultView.headers
	}
	return newTokenEntry(st.token).defaultView.headers
}

// session is the session callback's result for this request: computed once per
// token when it depends on the token only, else once per request.
func (st *sessionState) session(r *http.Request) (map[string]any, error) {
	if st.sessDone {
		return st.sess, st.sessErr
	}
	compute := func(req map[string]any) (map[string]any, error) {
		in := callbacks.SessionInput{Token: st.claims(), Expires: st.expires, Request: req}
		if st.entry != nil {
			in.User = st.entry.user()
		}
		return st.cb.Session(r.Context(), in)
	}
	switch {
	case !st.cb.HasSessionRules() || st.cb.SessionDependsOnTokenOnly():
		if e := st.entry; e != nil {
			m := e.extra()
			m.sessOnce.Do(func() {
				m.sess, m.sessErr = compute(nil)
				e.grow(valueSize(m.sess))
			})
			st.sess, st.sessErr = m.sess, m.sessErr
		} else {
			st.sess, st.sessErr = compute(nil)
		}
	default:
		st.sess, st.sessErr = compute(requestVars(r))
	}
	st.sessDone = true
	return st.sess, st.sessErr
}
