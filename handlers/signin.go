package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/session"
	"github.com/authgate/caddy-authgate/store"
)

// providerSet is a realm's providers, in the order the sign-in page lists them.
type providerSet struct {
	list []providers.Provider
	byID map[string]providers.Provider
}

// oauth finds an OAuth provider by id.
func (ps *providerSet) oauth(id string) (providers.OAuth, bool) {
	p, ok := ps.byID[id].(providers.OAuth)
	return p, ok
}

// provider finds a provider by id, or answers 404.
func (rl *realm) provider(w http.ResponseWriter, id string) (providers.Provider, bool) {
	p, ok := rl.providers.byID[id]
	if !ok {
		rl.pages.message(w, http.StatusNotFound, pageData{Title: "Unknown provider", Message: "There is no sign-in provider by that name."})
	}
	return p, ok
}

// fail redirects to the error page with an Auth.js error code; detail goes to the log only.
func (rl *realm) fail(w http.ResponseWriter, r *http.Request, code string, detail error, fields ...zap.Field) {
	rl.signInFailed(providerOf(fields), code)
	fields = append(fields, zap.String("error_code", code), zap.String("path", r.URL.Path))
	if detail != nil {
		fields = append(fields, zap.Error(detail))
	}
	rl.logger.Warn("sign-in failed", fields...)
	http.Redirect(w, r, rl.basePath+"/error?error="+url.QueryEscape(code), http.StatusFound)
}

// callbackURL is the redirect target a request asks for, checked by the redirect callback.
func (rl *realm) callbackURL(r *http.Request, raw string) string {
	base := rl.origin.base(r)
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
	return rl.origin.base(r).String() + rl.basePath + "/callback/" + url.PathEscape(id)
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
	if !rl.csrf.checkForm(r) {
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
	st := session.NewOAuthState(id, rl.callbackURL(r, r.PostForm.Get("callbackUrl")), op.UsesNonce())
	target, err := op.AuthCodeURL(r.Context(), rl.redirectURI(r, id), st.State, st.CodeVerifier, st.Nonce)
	if err == nil {
		err = rl.state.seal(w, r, st, rl.sessions.now())
	}
	if err != nil {
		rl.fail(w, r, errOAuthSignin, err, zap.String("provider", id))
		return
	}
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
	field := zap.String("provider", p.ID())
	form := r.URL.Query()
	if r.Method == http.MethodPost {
		form = r.Form
	}
	st, err := rl.state.open(w, r, p.ID(), form.Get("state"), rl.sessions.now())
	if err != nil {
		rl.fail(w, r, errOAuthCallback, err, field)
		return
	}
	id, err := p.Callback(r.Context(), rl.redirectURI(r, p.ID()), form, st.CodeVerifier, st.Nonce)
	if err != nil {
		rl.fail(w, r, errOAuthCallback, err, field)
		return
	}
	rl.finishSignIn(w, r, id, nil, st.CallbackURL)
}

// stateCookie carries an OAuth sign-in's state, PKCE verifier, nonce and
// callback URL from the redirect to the provider to the callback, sealed in a
// short-lived __Host- cookie bound to the provider.
type stateCookie struct {
	codecs [2]*session.Codec // by whether the request is secure
	names  [2]string
	origin *origin
}

func (c *stateCookie) seal(w http.ResponseWriter, r *http.Request, st session.OAuthState, now time.Time) error {
	secure := c.origin.secure(r)
	sealed, err := c.codecs[idx(secure)].SealState(st, now)
	if err != nil {
		return err
	}
	session.SetChunked(w, r, c.names[idx(secure)], sealed, session.StateMaxAge, c.origin.hostCookieOpts(r))
	return nil
}

// open checks the callback's state against the cookie, which is single-use:
// cleared whatever happens next.
func (c *stateCookie) open(w http.ResponseWriter, r *http.Request, provider, gotState string, now time.Time) (session.OAuthState, error) {
	secure := c.origin.secure(r)
	raw, _ := session.ReadChunked(r, c.names[idx(secure)])
	session.ClearChunked(w, r, c.names[idx(secure)], c.origin.hostCookieOpts(r))
	return c.codecs[idx(secure)].OpenState(raw, provider, gotState, now)
}

func (rl *realm) credentialsCallback(w http.ResponseWriter, r *http.Request, p *providers.Credentials) {
	if r.Method != http.MethodPost {
		http.Redirect(w, r, rl.basePath+"/signin", http.StatusFound)
		return
	}
	if !rl.csrf.checkForm(r) {
		rl.csrfFailed(w, r)
		return
	}
	callbackURL := rl.callbackURL(r, r.PostForm.Get("callbackUrl"))
	fields, creds := credentialFields(r.PostForm)
	tried := zap.String("username", truncated(fields["username"]))
	back := rl.basePath + "/signin?callbackUrl=" + url.QueryEscape(callbackURL)
	keys := credentialKeys(p.ID(), fields["username"], limitClient(r), p.FailureWindow())
	wait, err := waitFor(r.Context(), rl.sessions.store, keys)
	if err != nil {
		// Credentials need no store otherwise: while it is down, sign-in
		// goes on without limits rather than not at all.
		rl.logger.Error("reading the limits of failed sign-ins; checking without them", zap.String("provider", p.ID()), zap.Error(err))
	}
	if wait > 0 {
		rl.refused(r, p.ID(), errCredentialsSignin, "too many failed sign-ins", tried, zap.Duration("retry_after", wait))
		rl.metrics.rateLimit(limitCredentials)
		rl.tooMany(w, wait, "Too many sign-in attempts",
			"There were too many failed sign-ins for this username or from your network.", back)
		return
	}
	id, err := p.SignIn(r.Context(), fields)
	switch {
	case errors.Is(err, providers.ErrCredentials):
		// A success resets nothing: whoever knows one password cannot clear
		// the failures counted against others.
		if _, _, err := countAll(r.Context(), rl.sessions.store, keys); err != nil {
			rl.logger.Error("counting a failed sign-in", zap.String("provider", p.ID()), zap.Error(err))
		}
		rl.refused(r, p.ID(), errCredentialsSignin, "wrong username or password", tried)
		http.Redirect(w, r, rl.basePath+"/signin?error="+errCredentialsSignin+"&callbackUrl="+url.QueryEscape(callbackURL), http.StatusFound)
		return
	case errors.Is(err, providers.ErrBusy):
		rl.refused(r, p.ID(), errCredentialsSignin, "too many password checks at once", tried)
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Cache-Control", "no-store")
		rl.pages.message(w, http.StatusServiceUnavailable, pageData{
			Title: "Busy", Message: "Too many sign-ins are being checked right now. Try again in a moment.",
			Link: back, LinkText: "Back to sign in",
		})
		return
	case err != nil:
		rl.fail(w, r, errConfiguration, err, zap.String("provider", p.ID()))
		return
	}
	rl.finishSignIn(w, r, id, creds, callbackURL)
}

// credentialFields splits a credentials form: fields for the check (all but
// csrfToken and callbackUrl), creds for the sign_in callback (all but
// csrfToken and the password).
func credentialFields(form url.Values) (fields map[string]string, creds map[string]any) {
	fields = make(map[string]string, len(form))
	creds = make(map[string]any, len(form))
	for k, v := range form {
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
	return fields, creds
}

// refused logs a refused sign-in at info, as fail2ban and CrowdSec read it:
// the provider (the logger names the realm), what was tried (username or
// email), the client's IP, the Auth.js error code and why. Never the password.
func (rl *realm) refused(r *http.Request, provider, code, reason string, fields ...zap.Field) {
	rl.signInFailed(provider, code)
	if ce := rl.logger.Check(zap.InfoLevel, "sign-in refused"); ce != nil {
		ce.Write(append(fields, zap.String("provider", provider),
			zap.String("client_ip", clientIP(r)), zap.String("error_code", code), zap.String("reason", reason))...)
	}
}

// truncated bounds what a client typed before it goes to the log.
func truncated(s string) string {
	const most = 256
	if len(s) <= most {
		return s
	}
	return strings.ToValidUTF8(s[:most], "") + "…"
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
	user, res, err := rl.resolveUser(r, id)
	isNew := res.Created
	if errors.Is(err, store.ErrAccountNotLinked) {
		rl.fail(w, r, errAccountNotLinked, err, prov)
		return
	}
	if err != nil {
		rl.failSignIn(w, r, err, prov)
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
	rl.providerClaims(id, claims)
	if err := rl.sessions.start(w, r, claims); err != nil {
		rl.failSignIn(w, r, err, prov)
		return
	}
	rl.rememberProviderSession(r.Context(), claims)
	rl.logger.Info("signed in", prov, zap.Any("user_id", claims["sub"]))
	rl.signedIn(id, claims, res)
	http.Redirect(w, r, rl.pages.afterSignIn(rl.callbackURL(r, callbackURL), isNew), http.StatusFound)
}

// failSignIn answers a sign-in that the store or the session could not
// complete: 503 with Retry-After when the store cannot be reached right now
// (a Redis failover), for the user to try again; the Configuration error
// otherwise.
func (rl *realm) failSignIn(w http.ResponseWriter, r *http.Request, err error, prov zap.Field) {
	if !errors.Is(err, store.ErrUnavailable) {
		rl.fail(w, r, errConfiguration, err, prov)
		return
	}
	rl.signInFailed(providerOf([]zap.Field{prov}), errSessionUnavailable)
	_ = unavailable(w, r, rl.pages, rl.logger, err)
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
		rl.logger.Info("sign-in redirected by a rule", append(refusalFields(dec.Source, in.User["id"], in.User["email"]),
			field, zap.String("client_ip", clientIP(r)), zap.String("redirect", dec.Redirect))...)
		http.Redirect(w, r, rl.callbackURL(r, dec.Redirect), http.StatusFound)
	case !dec.Allow:
		// A rule's refusal is the operator's policy, not a failure: info, as
		// every refused sign-in, for fail2ban and CrowdSec.
		rl.logger.Info("sign-in refused by a rule", append(refusalFields(dec.Source, in.User["id"], in.User["email"]),
			field, zap.String("client_ip", clientIP(r)), zap.String("error_code", errAccessDenied))...)
		rl.signInFailed(providerOf([]zap.Field{field}), errAccessDenied)
		http.Redirect(w, r, rl.basePath+"/error?error="+errAccessDenied, http.StatusFound)
	default:
		return true
	}
	return false
}

// knownUser is the user sign_in sees: as in Auth.js, the stored user when the
// provider account is linked already, else the provider's description.
func (rl *realm) knownUser(r *http.Request, id *providers.Identity) map[string]any {
	typ, _ := id.Account["type"].(string)
	if typ == providers.TypeCredentials || typ == providers.TypeEmail || rl.sessions.store == nil {
		return id.User
	}
	provider, _ := id.Account["provider"].(string)
	accountID, _ := id.Account["provider_account_id"].(string)
	if u, err := rl.sessions.store.GetUserByAccount(r.Context(), provider, accountID); err == nil {
		return storeUserMap(u)
	}
	return id.User
}

// resolveUser finds or creates the stored user an OAuth, OIDC or email sign-in
// belongs to, so the user keeps one id (the token's sub) across sign-ins and
// providers. Credentials sign-ins are the credentials check's own users, as in
// Auth.js, and do not touch the store.
func (rl *realm) resolveUser(r *http.Request, id *providers.Identity) (map[string]any, store.Resolution, error) {
	typ, _ := id.Account["type"].(string)
	if typ == providers.TypeCredentials {
		return id.User, store.Resolution{}, nil
	}
	provider, _ := id.Account["provider"].(string)
	accountID, _ := id.Account["provider_account_id"].(string)
	linking := false
	if p, ok := rl.providers.byID[provider].(providers.OAuth); ok {
		linking = p.AllowsEmailLinking()
	}
	name, _ := id.User["name"].(string)
	email, _ := id.User["email"].(string)
	image, _ := id.User["image"].(string)
	u, res, err := store.ResolveUser(r.Context(), rl.sessions.store, store.SignIn{
		Provider: provider, ProviderAccountID: accountID, Type: typ,
		Name: name, Email: email, Image: image,
		EmailVerified: typ == providers.TypeEmail, AllowEmailLinking: linking,
	})
	if err != nil {
		return nil, store.Resolution{}, err
	}
	return storeUserMap(u), res, nil
}

func (rl *realm) csrfFailed(w http.ResponseWriter, r *http.Request) {
	rl.logger.Warn("POST without a valid CSRF token refused", zap.String("path", r.URL.Path))
	rl.pages.message(w, http.StatusForbidden, pageData{
		Title:   "Request refused",
		Message: "This form has expired or did not come from this site. Go back, reload the page and try again.",
		Link:    rl.basePath + "/signin", LinkText: "Sign in",
	})
}

// signout: POST /signout clears the session and redirects.
func (rl *realm) signout(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil || !rl.csrf.checkForm(r) {
		rl.csrfFailed(w, r)
		return
	}
	target := rl.callbackURL(r, r.PostForm.Get("callbackUrl"))
	if st, err := rl.sessions.read(w, r, rl.cb); st != nil {
		if u, ok := rl.endSessionURL(r.Context(), st.claims(), target); ok {
			target = u
		}
		rl.signedOut(st.claims())
		if err := rl.sessions.end(r.Context(), st); err != nil {
			rl.logger.Error("ending the session in the store failed; its cookie is cleared", zap.Error(err))
		}
	} else if err != nil {
		rl.logger.Error("reading the session to sign out failed; its cookie is cleared", zap.Error(err))
	}
	rl.sessions.clearCookie(w, r)
	http.Redirect(w, r, target, http.StatusFound)
}
