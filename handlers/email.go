package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/store"
)

// emailSignin: POST /signin/{email provider} with `email`. The address is checked,
// sign_in runs with email.verification_request, and only then is a link sent;
// the store keeps only a hash of its token.
func (rl *realm) emailSignin(w http.ResponseWriter, r *http.Request, p *providers.Email) {
	field := zap.String("provider", p.ID())
	addr, err := providers.NormalizeEmail(r.PostForm.Get("email"))
	if err != nil {
		rl.pages.message(w, http.StatusBadRequest, pageData{
			Title:   "Check your email address",
			Message: "That does not look like an email address. Go back and enter it again.",
			Link:    rl.basePath + "/signin?callbackUrl=" + url.QueryEscape(r.PostForm.Get("callbackUrl")), LinkText: "Back to sign in",
		})
		return
	}
	callbackURL := rl.callbackURL(r, r.PostForm.Get("callbackUrl"))
	ctx := r.Context()

	user := map[string]any{"id": addr, "email": addr}
	if u, err := rl.sessions.store.GetUserByEmail(ctx, addr); err == nil {
		user = storeUserMap(u)
	} else if !errors.Is(err, store.ErrNotFound) {
		rl.fail(w, r, errEmailSignin, err, field)
		return
	}
	account := map[string]any{"provider": p.ID(), "type": providers.TypeEmail, "provider_account_id": addr}
	if !rl.signInAllowed(w, r, callbacks.SignInInput{
		User: user, Account: account, Email: map[string]any{"verification_request": true}, Request: requestVars(r),
	}, field) {
		return
	}

	if !rl.underEmailLimits(w, r, p.ID(), addr) {
		return
	}

	token := randomString()
	hash := rl.links.hash(token)
	expires := rl.sessions.now().Add(p.MaxAge())
	if err := rl.sessions.store.CreateVerificationToken(ctx, store.VerificationToken{Identifier: addr, TokenHash: hash, Expires: expires}); err != nil {
		rl.fail(w, r, errEmailSignin, err, field)
		return
	}
	q := url.Values{"token": {token}, "email": {addr}, "callbackUrl": {callbackURL}}
	base := rl.origin.base(r)
	link := base.String() + rl.basePath + "/callback/" + url.PathEscape(p.ID()) + "?" + q.Encode()
	if err := p.SendLink(ctx, addr, link, base.Host); err != nil {
		// The link never left: make sure its token cannot be used either.
		_, _ = rl.sessions.store.UseVerificationToken(ctx, addr, hash)
		rl.fail(w, r, errEmailSignin, err, field)
		return
	}
	rl.logger.Info("email sign-in link sent", field)
	http.Redirect(w, r, rl.verifyRequestURL(p.ID(), addr, callbackURL), http.StatusFound)
}

// emailCallback: GET /callback/{email provider}?token&email&callbackUrl — the link.
// The token is consumed exactly once; then sign_in runs again, without
// verification_request, and the user is signed in.
func (rl *realm) emailCallback(w http.ResponseWriter, r *http.Request, p *providers.Email) {
	field := zap.String("provider", p.ID())
	q := r.URL.Query()
	addr, err := providers.NormalizeEmail(q.Get("email"))
	token := q.Get("token")
	if err != nil || token == "" {
		rl.fail(w, r, errVerification, errors.New("link without a valid email or token"), field)
		return
	}
	ctx := r.Context()
	if err := rl.links.use(ctx, rl.sessions.store, addr, token); err != nil {
		rl.fail(w, r, errVerification, err, field)
		return
	}
	id := &providers.Identity{
		User:    map[string]any{"id": addr, "email": addr},
		Account: map[string]any{"provider": p.ID(), "type": providers.TypeEmail, "provider_account_id": addr},
	}
	if u, err := rl.sessions.store.GetUserByEmail(ctx, addr); err == nil {
		id.User = storeUserMap(u)
	}
	rl.finishSignIn(w, r, id, nil, q.Get("callbackUrl"))
}

// linkTokens makes and checks the tokens of email sign-in links. The store
// keeps only a hash of a token bound to a realm secret, so a copy of the store
// alone does not yield working links.
type linkTokens struct {
	// secrets are the realm's: the first for new links, all for links sent
	// before a rotation.
	secrets []string
}

func tokenHash(token, secret string) string {
	sum := sha256.Sum256([]byte(token + secret))
	return hex.EncodeToString(sum[:])
}

// hash is what the store keeps of a new link's token.
func (lt linkTokens) hash(token string) string { return tokenHash(token, lt.secrets[0]) }

// use consumes the link's token, whichever of the realm's secrets it was made
// with (links sent before a secret rotation keep working).
func (lt linkTokens) use(ctx context.Context, st store.Store, addr, token string) error {
	var err error
	for _, secret := range lt.secrets {
		if _, err = st.UseVerificationToken(ctx, addr, tokenHash(token, secret)); err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return err
}

// underEmailLimits counts one link sent to addr at the client's request
// and, when that is one too many (emailKeys), answers 429.
func (rl *realm) underEmailLimits(w http.ResponseWriter, r *http.Request, provider, addr string) bool {
	ctx, keys := r.Context(), emailKeys(addr, limitClient(r))
	wait, err := waitFor(ctx, rl.sessions.store, keys)
	refuse := wait > 0
	if err == nil && !refuse {
		// Concurrent requests may all have passed waitFor: the count decides.
		wait, refuse, err = countAll(ctx, rl.sessions.store, keys)
	}
	if err != nil {
		rl.fail(w, r, errEmailSignin, err, zap.String("provider", provider))
		return false
	}
	if !refuse {
		return true
	}
	rl.refused(r, provider, errEmailSignin, "too many sign-in links", zap.String("email", addr), zap.Duration("retry_after", wait))
	rl.metrics.rateLimit(limitEmail)
	rl.tooMany(w, wait, "Too many sign-in emails",
		"Too many sign-in links were requested. Check your inbox for one already sent.", "")
	return false
}

// storeUserMap is a stored user in Auth.js's user shape.
func storeUserMap(u store.User) map[string]any {
	m := map[string]any{"id": u.ID, "name": u.Name, "email": u.Email, "image": u.Image}
	if !u.EmailVerified.IsZero() {
		m["email_verified"] = u.EmailVerified.UTC().Format(time.RFC3339)
	}
	return m
}
