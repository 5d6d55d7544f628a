package handlers

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/store"
)

// Event names, as Auth.js names its events, in snake_case.
const (
	eventSignIn        = "sign_in"
	eventSignOut       = "sign_out"
	eventCreateUser    = "create_user"
	eventLinkAccount   = "link_account"
	eventUpdateSession = "update_session"
	eventSignInFailed  = "sign_in_failed"
)

// emitter emits a realm's events through Caddy's events app, with the authgate
// app as their origin, so that `events { on sign_in … }` can act on them.
// Their data is ids, addresses and codes: never a token, secret or password.
type emitter struct {
	app   *caddyevents.App
	ctx   caddy.Context // the app's: events come from the authgate module
	realm string
}

// emit sends the event name with data (to which it adds the realm). Caddy runs
// the subscribers synchronously, as it does for its own events.
func (e *emitter) emit(name string, data map[string]any) {
	if e == nil || !e.app.ShouldEmit(name) {
		return
	}
	data["realm"] = e.realm
	e.app.Emit(e.ctx, name, data)
}

// signedIn reports a successful sign-in of id, whose token is claims: the
// counter, sign_in, create_user when the sign-in created the user, and
// link_account when it linked its account (OAuth, OIDC) to the user: a new one,
// or with allow_email_linking the one with its address, as Auth.js's
// linkAccount event.
func (rl *realm) signedIn(id *providers.Identity, claims map[string]any, res store.Resolution) {
	provider, _ := id.Account["provider"].(string)
	rl.metrics.signIn(provider, "")
	userID, email := claims["sub"], claims["email"]
	if res.Created {
		rl.events.emit(eventCreateUser, map[string]any{"user_id": userID, "email": email})
	}
	if res.Linked {
		rl.events.emit(eventLinkAccount, map[string]any{"provider": provider, "user_id": userID})
	}
	rl.events.emit(eventSignIn, map[string]any{"provider": provider, "user_id": userID, "email": email, "is_new_user": res.Created})
}

// signInFailed reports a refused or failed sign-in through provider (its id,
// "" when not known) with its Auth.js error code.
func (rl *realm) signInFailed(provider, code string) {
	rl.metrics.signIn(provider, code)
	rl.events.emit(eventSignInFailed, map[string]any{"provider": provider, "code": code})
}

// signedOut reports a sign-out that ended the session whose token is claims.
func (rl *realm) signedOut(claims map[string]any) {
	rl.metrics.signOut()
	rl.events.emit(eventSignOut, map[string]any{"user_id": claims["sub"]})
}

// sessionUpdated reports a session update (POST /session) of the user whose
// new token is claims.
func (rl *realm) sessionUpdated(claims map[string]any) {
	rl.events.emit(eventUpdateSession, map[string]any{"user_id": claims["sub"]})
}

// providerOf is the provider id among a sign-in's log fields, "" if none.
func providerOf(fields []zap.Field) string {
	for _, f := range fields {
		if f.Key == "provider" && f.Type == zapcore.StringType {
			return f.String
		}
	}
	return ""
}
