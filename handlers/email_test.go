package handlers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/store"
)

// A sign-in link sent before a secret rotation still works after it (the old
// secret is listed second), and only once; a link made with a secret the realm
// no longer has does not.
func TestEmailTokenSurvivesSecretRotation(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	const oldSecret, newSecret = "the-old-secret-0123456789-0123456789", "the-new-secret-0123456789-0123456789"

	before := benchRealm(t, func(r *Realm) { r.Secrets = []string{oldSecret} })
	const addr, token = "alice@example.com", "a-link-token"
	if err := st.CreateVerificationToken(ctx, store.VerificationToken{
		Identifier: addr, TokenHash: before.links.hash(token), Expires: time.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}

	dropped := benchRealm(t, func(r *Realm) { r.Secrets = []string{newSecret} })
	if err := dropped.links.use(ctx, st, addr, token); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a link of a secret the realm no longer has: err = %v, want ErrNotFound", err)
	}

	after := benchRealm(t, func(r *Realm) { r.Secrets = []string{newSecret, oldSecret} })
	if err := after.links.use(ctx, st, addr, token); err != nil {
		t.Fatalf("a link sent before the rotation: %v", err)
	}
	if err := after.links.use(ctx, st, addr, token); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the same link a second time: err = %v, want ErrNotFound", err)
	}
}
