package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/store"
)

// Sessions that the identity provider has a say in: API clients' bearer
// tokens, sign-out at the provider (RP-initiated logout) and the provider
// ending sessions (back-channel logout).

// Claims authgate keeps in the session token for the provider: which
// provider signed the user in, its session id (sid) for back-channel logout,
// and the ID token when sign-out ends the provider's session too.
const (
	claimProvider = "provider"
	claimIDPSid   = "idp_sid"
	claimIDToken  = "id_token"
)

// providerClaims adds to a new session's claims what the provider needs:
// its id and session id (OIDC), and the ID token with sign_out_at_provider.
func (rl *realm) providerClaims(id *providers.Identity, claims map[string]any) {
	pid, _ := id.Account["provider"].(string)
	if _, ok := rl.providers.byID[pid].(providers.BackChannelLogout); !ok {
		return
	}
	claims[claimProvider] = pid
	if sid, _ := id.Profile["sid"].(string); sid != "" {
		claims[claimIDPSid] = sid
	}
	if es, ok := rl.providers.byID[pid].(providers.EndSessioner); ok && es.SignsOutAtProvider() {
		if raw, _ := id.Account["id_token"].(string); raw != "" {
			claims[claimIDToken] = raw
		}
	}
}

// rememberProviderSession maps the provider's session id to the user, so that
// a logout token naming only the sid finds the sessions to end.
func (rl *realm) rememberProviderSession(ctx context.Context, claims map[string]any) {
	pid, _ := claims[claimProvider].(string)
	sid, _ := claims[claimIDPSid].(string)
	sub, _ := claims["sub"].(string)
	if pid == "" || sid == "" || sub == "" {
		return
	}
	if err := rl.sessions.store.SetClaim(ctx, providerSessionKey(pid, sid), sub, rl.sessions.maxAge); err != nil {
		rl.logger.Error("remembering the provider's session for back-channel logout", zap.Error(err))
	}
}

func providerSessionKey(provider, sid string) string { return "idp-sid:" + provider + ":" + sid }

// endSessionURL is where sign-out sends the browser after authgate's session
// ended: the provider's end_session_endpoint when the session was made with
// sign_out_at_provider, with the checked callback URL as post_logout_redirect_uri.
func (rl *realm) endSessionURL(ctx context.Context, token map[string]any, callbackURL string) (string, bool) {
	raw, _ := token[claimIDToken].(string)
	pid, _ := token[claimProvider].(string)
	es, ok := rl.providers.byID[pid].(providers.EndSessioner)
	if raw == "" || !ok || !es.SignsOutAtProvider() {
		return "", false
	}
	return es.EndSessionURL(ctx, raw, callbackURL)
}

// backchannelLogout: POST /backchannel-logout/{provider} with a logout_token.
// A valid token, never seen before, ends every session of the provider
// session (sid) or user (sub) on every instance: 200. Anything else: 400, and
// nothing ends.
func (rl *realm) backchannelLogout(w http.ResponseWriter, r *http.Request, id string) {
	w.Header().Set("Cache-Control", "no-store")
	p, ok := rl.providers.byID[id].(providers.BackChannelLogout)
	if !ok {
		writeError(w, http.StatusNotFound, "unknown provider")
		return
	}
	if err := parseForm(w, r); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	field := zap.String("provider", id)
	lt, err := p.VerifyLogoutToken(r.Context(), r.PostForm.Get("logout_token"))
	if err != nil {
		rl.logger.Info("back-channel logout refused", field, zap.Error(err))
		writeError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	ctx := r.Context()
	ttl := time.Until(lt.Expires)
	if ttl < time.Minute {
		ttl = time.Minute
	}
	if err := rl.sessions.store.Claim(ctx, "logout-jti:"+id+":"+lt.JTI, "", ttl); err != nil {
		if errors.Is(err, store.ErrConflict) {
			rl.logger.Info("back-channel logout refused: the logout token was used before", field)
			writeError(w, http.StatusBadRequest, "invalid_request")
			return
		}
		_ = unavailable(w, r, rl.pages, rl.logger, err)
		return
	}
	n, err := rl.endProviderSessions(ctx, id, lt)
	if err != nil {
		rl.logger.Error("back-channel logout: ending sessions", field, zap.Error(err))
		_ = unavailable(w, r, rl.pages, rl.logger, err)
		return
	}
	rl.logger.Info("back-channel logout", field, zap.String("sub", lt.Subject), zap.Bool("by_sid", lt.SessionID != ""), zap.Int("sessions", n))
	w.WriteHeader(http.StatusOK)
}

// endProviderSessions ends the sessions a logout token names: those of the
// provider session sid, else every session of the provider's user sub made
// through that provider.
func (rl *realm) endProviderSessions(ctx context.Context, provider string, lt providers.LogoutToken) (int, error) {
	st := rl.sessions.store
	var userID string
	switch {
	case lt.Subject != "":
		u, err := st.GetUserByAccount(ctx, provider, lt.Subject)
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		userID = u.ID
	default:
		v, err := st.GetClaim(ctx, providerSessionKey(provider, lt.SessionID))
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		userID = v
	}
	list, err := st.UserSessions(ctx, userID)
	if err != nil {
		return 0, err
	}
	now := rl.sessions.now()
	n := 0
	var errs []error
	for _, s := range list {
		if s.Data[claimProvider] != provider || (lt.SessionID != "" && s.Data[claimIDPSid] != lt.SessionID) {
			continue
		}
		n++
		if sid, ok := strings.CutPrefix(s.ID, jwtPrefix); ok {
			errs = append(errs, rl.sessions.revokeSID(ctx, sid, now))
		} else {
			errs = append(errs, rl.sessions.deleteDatabaseSession(ctx, s.ID))
		}
	}
	return n, errors.Join(errs...)
}

// bearerToken is the request's `Authorization: Bearer` token, when the realm
// takes bearer tokens.
func (rl *realm) bearerToken(r *http.Request) (string, bool) {
	if len(rl.bearers) == 0 {
		return "", false
	}
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}

// bearerSession is the session of an API client's bearer token: verified by
// the provider that issued it, allowed by sign_in (account.type "bearer"),
// shaped by jwt, and cached until the token expires. nil: refused.
func (rl *realm) bearerSession(r *http.Request, raw string) *sessionState {
	now := rl.sessions.now()
	cache := rl.sessions.cache
	key := cache.bearerKeyOf(raw)
	if e := cache.lookup(key, now); e != nil {
		return &sessionState{cb: rl.cb, entry: e, expires: e.expiry()}
	}
	if raw == "" {
		return nil
	}
	var (
		p       providers.BearerVerifier
		claims  map[string]any
		expires time.Time
		err     error
	)
	for _, b := range rl.bearers {
		if claims, expires, err = b.VerifyBearer(r.Context(), raw); err == nil {
			p = b
			break
		}
	}
	if p == nil {
		rl.logger.Info("bearer token refused", zap.String("client_ip", clientIP(r)), zap.Error(err))
		return nil
	}
	e, err := rl.bearerEntry(r, p, claims, expires)
	if err != nil {
		rl.logger.Info("bearer token refused", zap.String("provider", p.ID()), zap.String("client_ip", clientIP(r)), zap.Error(err))
		return nil
	}
	cache.store(key, e, now)
	return &sessionState{cb: rl.cb, entry: e, expires: e.expiry()}
}

// errBearerDenied: sign_in did not allow the token's user.
var errBearerDenied = errors.New("sign_in did not allow it")

// bearerEntry runs sign_in and jwt for a verified bearer token.
func (rl *realm) bearerEntry(r *http.Request, p providers.BearerVerifier, claims map[string]any, expires time.Time) (*tokenEntry, error) {
	sub, _ := claims["sub"].(string)
	id := &providers.Identity{
		User:    map[string]any{"id": sub, "name": claims["name"], "email": providers.VerifiedEmail(claims), "image": claims["picture"]},
		Account: map[string]any{"provider": p.ID(), "type": "bearer", "provider_account_id": sub},
		Profile: claims,
	}
	user := rl.knownUser(r, id)
	req := requestVars(r)
	dec, err := rl.cb.SignIn(r.Context(), callbacks.SignInInput{User: user, Account: id.Account, Profile: claims, Request: req})
	if err != nil {
		return nil, err
	}
	if !dec.Allow || dec.Redirect != "" {
		return nil, errBearerDenied
	}
	userID, _ := user["id"].(string)
	token := map[string]any{"sub": userID, "name": user["name"], "email": user["email"], "picture": user["image"]}
	out, err := rl.cb.JWT(r.Context(), callbacks.JWTInput{Token: token, User: user, Account: id.Account, Profile: claims, Trigger: "sign_in", Request: req})
	if err != nil {
		return nil, err
	}
	out["exp"] = float64(expires.Unix())
	if iat, ok := claims["iat"].(float64); ok {
		out["iat"] = iat
	}
	return newTokenEntry(out), nil
}

// bearerRefused answers an API request whose bearer token is missing its
// mark: 401 with RFC 6750's WWW-Authenticate, never a redirect.
func bearerRefused(w http.ResponseWriter) error {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, "invalid_token")
	return nil
}
