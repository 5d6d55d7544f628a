// Package storetest is the conformance suite every store.Store passes: run it
// from an implementation's tests with Run, and measure the hot paths with
// the Benchmark functions.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/store"
)

// expiry is how long the records that tests let expire live; tests sleep
// past it (a wait, not a timing assertion).
const expiry = 150 * time.Millisecond

// Run runs the suite, each subtest (in parallel) on a new store from
// newStore, which should close it with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	groups := []struct {
		name  string
		tests map[string]func(*testing.T, store.Store)
	}{
		{"Users", userTests},
		{"Accounts", accountTests},
		{"VerificationTokens", tokenTests},
		{"Sessions", sessionTests},
		{"Revocations", revocationTests},
		{"Hit", hitTests},
		{"Claims", claimTests},
		{"Limit", limitTests},
		{"ResolveUser", resolveTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			names := make([]string, 0, len(g.tests))
			for name := range g.tests {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					g.tests[name](t, newStore(t))
				})
			}
		})
	}
}

var ctx = context.Background()

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func sameUser(t *testing.T, what string, got, want store.User) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Email != want.Email || got.Image != want.Image ||
		!got.EmailVerified.Equal(want.EmailVerified) || !got.Created.Equal(want.Created) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

var userTests = map[string]func(*testing.T, store.Store){
	"CreateAssignsRandomID": func(t *testing.T, s store.Store) {
		a := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "A"}))
		b := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "B"}))
		if a.ID == "" || b.ID == "" || a.ID == b.ID {
			t.Fatalf("ids %q and %q: want two different random ids", a.ID, b.ID)
		}
		if a.Created.IsZero() {
			t.Fatal("Created not set")
		}
		sameUser(t, "GetUser", must[store.User](t)(s.GetUser(ctx, a.ID)), a)
	},
	"CreateKeepsGivenFields": func(t *testing.T, s store.Store) {
		created := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
		verified := created.Add(time.Hour)
		in := store.User{ID: "u1", Name: "Ann", Email: "ann@example.com", Image: "https://img/ann", EmailVerified: verified, Created: created}
		u := must[store.User](t)(s.CreateUser(ctx, in))
		sameUser(t, "CreateUser", u, in)
		sameUser(t, "GetUser", must[store.User](t)(s.GetUser(ctx, "u1")), in)
	},
	"CreateDuplicateID": func(t *testing.T, s store.Store) {
		must[store.User](t)(s.CreateUser(ctx, store.User{ID: "u1", Name: "first"}))
		_, err := s.CreateUser(ctx, store.User{ID: "u1", Name: "second"})
		wantErr(t, "second CreateUser", err, store.ErrConflict)
		if u := must[store.User](t)(s.GetUser(ctx, "u1")); u.Name != "first" {
			t.Fatalf("user overwritten: %+v", u)
		}
	},
	"CreateDuplicateEmail": func(t *testing.T, s store.Store) {
		must[store.User](t)(s.CreateUser(ctx, store.User{Email: "ann@example.com"}))
		_, err := s.CreateUser(ctx, store.User{Email: "ANN@example.com"})
		wantErr(t, "CreateUser with a taken address", err, store.ErrConflict)
		// Users without an address do not collide.
		must[store.User](t)(s.CreateUser(ctx, store.User{}))
		must[store.User](t)(s.CreateUser(ctx, store.User{}))
	},
	"GetMissing": func(t *testing.T, s store.Store) {
		_, err := s.GetUser(ctx, "nobody")
		wantErr(t, "GetUser", err, store.ErrNotFound)
		_, err = s.GetUserByEmail(ctx, "nobody@example.com")
		wantErr(t, "GetUserByEmail", err, store.ErrNotFound)
	},
	"EmailIsCaseInsensitive": func(t *testing.T, s store.Store) {
		u := must[store.User](t)(s.CreateUser(ctx, store.User{Email: " Ann@Example.COM"}))
		if u.Email != "ann@example.com" {
			t.Fatalf("stored email %q, want it lowercased", u.Email)
		}
		for _, e := range []string{"ann@example.com", "ANN@EXAMPLE.COM", "Ann@example.com"} {
			sameUser(t, "GetUserByEmail("+e+")", must[store.User](t)(s.GetUserByEmail(ctx, e)), u)
		}
	},
	"Update": func(t *testing.T, s store.Store) {
		u := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "Ann", Email: "ann@example.com"}))
		want := u
		want.Name, want.Email, want.Image = "Anne", "Anne@Example.com", "https://img/anne"
		want.EmailVerified = time.Now().UTC()
		upd := want
		upd.Created = time.Time{} // Created is kept
		ok(t, s.UpdateUser(ctx, upd))
		want.Email = "anne@example.com"
		sameUser(t, "GetUser", must[store.User](t)(s.GetUser(ctx, u.ID)), want)
		sameUser(t, "GetUserByEmail(new)", must[store.User](t)(s.GetUserByEmail(ctx, "anne@example.com")), want)
		_, err := s.GetUserByEmail(ctx, "ann@example.com")
		wantErr(t, "GetUserByEmail(old)", err, store.ErrNotFound)
		// The old address is free again.
		must[store.User](t)(s.CreateUser(ctx, store.User{Email: "ann@example.com"}))
	},
	"UpdateMissing": func(t *testing.T, s store.Store) {
		wantErr(t, "UpdateUser", s.UpdateUser(ctx, store.User{ID: "nobody", Name: "x"}), store.ErrNotFound)
		_, err := s.GetUser(ctx, "nobody")
		wantErr(t, "GetUser after UpdateUser", err, store.ErrNotFound)
	},
	"UpdateToTakenEmail": func(t *testing.T, s store.Store) {
		must[store.User](t)(s.CreateUser(ctx, store.User{Email: "ann@example.com"}))
		b := must[store.User](t)(s.CreateUser(ctx, store.User{Email: "bob@example.com"}))
		b.Email = "ann@example.com"
		wantErr(t, "UpdateUser", s.UpdateUser(ctx, b), store.ErrConflict)
		if got := must[store.User](t)(s.GetUser(ctx, b.ID)); got.Email != "bob@example.com" {
			t.Fatalf("user changed by a failed update: %+v", got)
		}
		// Removing the address frees it.
		b.Email = ""
		ok(t, s.UpdateUser(ctx, b))
		must[store.User](t)(s.CreateUser(ctx, store.User{Email: "bob@example.com"}))
	},
	"Delete": func(t *testing.T, s store.Store) {
		d, isDeleter := s.(store.UserDeleter)
		if !isDeleter {
			t.Skip("not a store.UserDeleter")
		}
		u := must[store.User](t)(s.CreateUser(ctx, store.User{Email: "ann@example.com"}))
		ok(t, d.DeleteUser(ctx, u.ID))
		_, err := s.GetUser(ctx, u.ID)
		wantErr(t, "GetUser", err, store.ErrNotFound)
		_, err = s.GetUserByEmail(ctx, "ann@example.com")
		wantErr(t, "GetUserByEmail", err, store.ErrNotFound)
		must[store.User](t)(s.CreateUser(ctx, store.User{Email: "ann@example.com"}))
		ok(t, d.DeleteUser(ctx, u.ID)) // missing: no error
	},
}

var accountTests = map[string]func(*testing.T, store.Store){
	"LinkAndFind": func(t *testing.T, s store.Store) {
		u := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "Ann"}))
		ok(t, s.LinkAccount(ctx, store.Account{UserID: u.ID, Provider: "github", ProviderAccountID: "42", Type: "oauth"}))
		ok(t, s.LinkAccount(ctx, store.Account{UserID: u.ID, Provider: "google", ProviderAccountID: "42", Type: "oidc"}))
		for _, p := range []string{"github", "google"} {
			sameUser(t, "GetUserByAccount("+p+")", must[store.User](t)(s.GetUserByAccount(ctx, p, "42")), u)
		}
		_, err := s.GetUserByAccount(ctx, "github", "43")
		wantErr(t, "GetUserByAccount(other id)", err, store.ErrNotFound)
		_, err = s.GetUserByAccount(ctx, "gitlab", "42")
		wantErr(t, "GetUserByAccount(other provider)", err, store.ErrNotFound)
	},
	"RelinkConflicts": func(t *testing.T, s store.Store) {
		a := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "A"}))
		b := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "B"}))
		ok(t, s.LinkAccount(ctx, store.Account{UserID: a.ID, Provider: "github", ProviderAccountID: "42", Type: "oauth"}))
		err := s.LinkAccount(ctx, store.Account{UserID: b.ID, Provider: "github", ProviderAccountID: "42", Type: "oauth"})
		wantErr(t, "LinkAccount to another user", err, store.ErrConflict)
		sameUser(t, "GetUserByAccount", must[store.User](t)(s.GetUserByAccount(ctx, "github", "42")), a)
	},
	"AmbiguousKeys": func(t *testing.T, s store.Store) {
		a := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "A"}))
		b := must[store.User](t)(s.CreateUser(ctx, store.User{Name: "B"}))
		ok(t, s.LinkAccount(ctx, store.Account{UserID: a.ID, Provider: "a:b", ProviderAccountID: "c", Type: "oauth"}))
		ok(t, s.LinkAccount(ctx, store.Account{UserID: b.ID, Provider: "a", ProviderAccountID: "b:c", Type: "oauth"}))
		sameUser(t, "a:b/c", must[store.User](t)(s.GetUserByAccount(ctx, "a:b", "c")), a)
		sameUser(t, "a/b:c", must[store.User](t)(s.GetUserByAccount(ctx, "a", "b:c")), b)
	},
}

func token(identifier, hash string, d time.Duration) store.VerificationToken {
	return store.VerificationToken{Identifier: identifier, TokenHash: hash, Expires: time.Now().Add(d)}
}

var tokenTests = map[string]func(*testing.T, store.Store){
	"UsedOnce": func(t *testing.T, s store.Store) {
		in := token("ann@example.com", "h1", time.Hour)
		ok(t, s.CreateVerificationToken(ctx, in))
		got := must[store.VerificationToken](t)(s.UseVerificationToken(ctx, "ann@example.com", "h1"))
		if got.Identifier != in.Identifier || got.TokenHash != in.TokenHash || !got.Expires.Equal(in.Expires) {
			t.Fatalf("got %+v, want %+v", got, in)
		}
		_, err := s.UseVerificationToken(ctx, "ann@example.com", "h1")
		wantErr(t, "second use", err, store.ErrNotFound)
	},
	"WrongIdentifierOrHash": func(t *testing.T, s store.Store) {
		ok(t, s.CreateVerificationToken(ctx, token("ann@example.com", "h1", time.Hour)))
		_, err := s.UseVerificationToken(ctx, "bob@example.com", "h1")
		wantErr(t, "other identifier", err, store.ErrNotFound)
		_, err = s.UseVerificationToken(ctx, "ann@example.com", "h2")
		wantErr(t, "other hash", err, store.ErrNotFound)
		must[store.VerificationToken](t)(s.UseVerificationToken(ctx, "ann@example.com", "h1"))
	},
	"Expired": func(t *testing.T, s store.Store) {
		ok(t, s.CreateVerificationToken(ctx, token("ann@example.com", "h1", expiry)))
		ok(t, s.CreateVerificationToken(ctx, token("ann@example.com", "past", -time.Second)))
		time.Sleep(expiry + 50*time.Millisecond)
		for _, h := range []string{"h1", "past"} {
			_, err := s.UseVerificationToken(ctx, "ann@example.com", h)
			wantErr(t, "expired token "+h, err, store.ErrNotFound)
		}
	},
	"ConcurrentUseOnce": func(t *testing.T, s store.Store) {
		ok(t, s.CreateVerificationToken(ctx, token("ann@example.com", "h1", time.Hour)))
		var wins, misses atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 20 {
			wg.Go(func() {
				<-start
				_, err := s.UseVerificationToken(ctx, "ann@example.com", "h1")
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, store.ErrNotFound):
					misses.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || misses.Load() != 19 {
			t.Fatalf("%d successes and %d ErrNotFound of 20 concurrent uses, want 1 and 19", wins.Load(), misses.Load())
		}
	},
}

func session(id, userID string, d time.Duration) store.Session {
	return store.Session{ID: id, UserID: userID, Expires: time.Now().Add(d),
		Data: map[string]any{"role": "admin", "n": float64(3), "groups": []any{"a", "b"}, "nested": map[string]any{"k": true}}}
}

func sameSession(t *testing.T, what string, got, want store.Session) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || !got.Expires.Equal(want.Expires) ||
		fmt.Sprint(got.Data) != fmt.Sprint(want.Data) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func sessionIDs(t *testing.T, s store.Store, userID string) []string {
	t.Helper()
	var ids []string
	for _, x := range must[[]store.Session](t)(s.UserSessions(ctx, userID)) {
		if x.UserID != userID {
			t.Fatalf("UserSessions(%s) returned %+v", userID, x)
		}
		ids = append(ids, x.ID)
	}
	slices.Sort(ids)
	return ids
}

var sessionTests = map[string]func(*testing.T, store.Store){
	"CreateGet": func(t *testing.T, s store.Store) {
		in := session("s1", "u1", time.Hour)
		ok(t, s.CreateSession(ctx, in))
		sameSession(t, "GetSession", must[store.Session](t)(s.GetSession(ctx, "s1")), in)
		_, err := s.GetSession(ctx, "s2")
		wantErr(t, "GetSession(missing)", err, store.ErrNotFound)
	},
	"DataIsACopy": func(t *testing.T, s store.Store) {
		in := session("s1", "u1", time.Hour)
		ok(t, s.CreateSession(ctx, in))
		in.Data["role"] = "changed after CreateSession"
		got := must[store.Session](t)(s.GetSession(ctx, "s1"))
		got.Data["role"] = "changed after GetSession"
		if again := must[store.Session](t)(s.GetSession(ctx, "s1")); again.Data["role"] != "admin" {
			t.Fatalf("stored data changed through a caller's map: %v", again.Data)
		}
	},
	"CreateDuplicate": func(t *testing.T, s store.Store) {
		ok(t, s.CreateSession(ctx, session("s1", "u1", time.Hour)))
		wantErr(t, "second CreateSession", s.CreateSession(ctx, session("s1", "u2", time.Hour)), store.ErrConflict)
		if got := must[store.Session](t)(s.GetSession(ctx, "s1")); got.UserID != "u1" {
			t.Fatalf("session overwritten: %+v", got)
		}
	},
	"Update": func(t *testing.T, s store.Store) {
		ok(t, s.CreateSession(ctx, session("s1", "u1", time.Hour)))
		upd := store.Session{ID: "s1", UserID: "ignored", Expires: time.Now().Add(2 * time.Hour), Data: map[string]any{"role": "user"}}
		ok(t, s.UpdateSession(ctx, upd))
		want := upd
		want.UserID = "u1"
		sameSession(t, "GetSession", must[store.Session](t)(s.GetSession(ctx, "s1")), want)
		if ids := sessionIDs(t, s, "u1"); !slices.Equal(ids, []string{"s1"}) {
			t.Fatalf("UserSessions(u1) = %v after the update, want [s1]", ids)
		}
	},
	"UpdateMissing": func(t *testing.T, s store.Store) {
		wantErr(t, "UpdateSession", s.UpdateSession(ctx, session("s1", "u1", time.Hour)), store.ErrNotFound)
		_, err := s.GetSession(ctx, "s1")
		wantErr(t, "GetSession after UpdateSession", err, store.ErrNotFound)
	},
	"Delete": func(t *testing.T, s store.Store) {
		ok(t, s.CreateSession(ctx, session("s1", "u1", time.Hour)))
		ok(t, s.CreateSession(ctx, session("s2", "u1", time.Hour)))
		ok(t, s.DeleteSession(ctx, "s1"))
		_, err := s.GetSession(ctx, "s1")
		wantErr(t, "GetSession after DeleteSession", err, store.ErrNotFound)
		if ids := sessionIDs(t, s, "u1"); !slices.Equal(ids, []string{"s2"}) {
			t.Fatalf("UserSessions(u1) = %v, want [s2]", ids)
		}
		ok(t, s.DeleteSession(ctx, "s1")) // missing: no error
	},
	"UserSessions": func(t *testing.T, s store.Store) {
		ok(t, s.CreateSession(ctx, session("s1", "u1", time.Hour)))
		ok(t, s.CreateSession(ctx, session("s2", "u1", time.Hour)))
		ok(t, s.CreateSession(ctx, session("s3", "u1", expiry)))
		ok(t, s.CreateSession(ctx, session("s4", "u2", time.Hour)))
		if ids := sessionIDs(t, s, "u1"); !slices.Equal(ids, []string{"s1", "s2", "s3"}) {
			t.Fatalf("UserSessions(u1) = %v, want [s1 s2 s3]", ids)
		}
		time.Sleep(expiry + 50*time.Millisecond)
		if ids := sessionIDs(t, s, "u1"); !slices.Equal(ids, []string{"s1", "s2"}) {
			t.Fatalf("UserSessions(u1) = %v after s3 expired, want [s1 s2]", ids)
		}
		if ids := sessionIDs(t, s, "nobody"); len(ids) != 0 {
			t.Fatalf("UserSessions(nobody) = %v", ids)
		}
	},
	"Expired": func(t *testing.T, s store.Store) {
		ok(t, s.CreateSession(ctx, session("s1", "u1", expiry)))
		ok(t, s.CreateSession(ctx, session("past", "u1", -time.Second)))
		must[store.Session](t)(s.GetSession(ctx, "s1"))
		time.Sleep(expiry + 50*time.Millisecond)
		for _, id := range []string{"s1", "past"} {
			_, err := s.GetSession(ctx, id)
			wantErr(t, "GetSession("+id+")", err, store.ErrNotFound)
		}
		wantErr(t, "UpdateSession(expired)", s.UpdateSession(ctx, session("s1", "u1", time.Hour)), store.ErrNotFound)
		// An expired id may be used again.
		ok(t, s.CreateSession(ctx, session("s1", "u1", time.Hour)))
	},
	"UpdateToPastEnds": func(t *testing.T, s store.Store) {
		ok(t, s.CreateSession(ctx, session("s1", "u1", time.Hour)))
		ok(t, s.UpdateSession(ctx, session("s1", "u1", -time.Second)))
		_, err := s.GetSession(ctx, "s1")
		wantErr(t, "GetSession", err, store.ErrNotFound)
		if ids := sessionIDs(t, s, "u1"); len(ids) != 0 {
			t.Fatalf("UserSessions(u1) = %v", ids)
		}
	},
}

func revoked(t *testing.T, s store.Store, jti string) bool {
	t.Helper()
	_, r := must[map[string]time.Time](t)(s.Revocations(ctx))[jti]
	return r
}

var revocationTests = map[string]func(*testing.T, store.Store){
	"UntilExpiry": func(t *testing.T, s store.Store) {
		ok(t, s.Revoke(ctx, "j1", time.Now().Add(expiry)))
		ok(t, s.Revoke(ctx, "j2", time.Now().Add(time.Hour)))
		if !revoked(t, s, "j1") || !revoked(t, s, "j2") {
			t.Fatal("not revoked")
		}
		if revoked(t, s, "j3") {
			t.Fatal("an unknown jti is revoked")
		}
		time.Sleep(expiry + 50*time.Millisecond)
		if revoked(t, s, "j1") {
			t.Fatal("still revoked after it expired")
		}
		if !revoked(t, s, "j2") {
			t.Fatal("j2 no longer revoked")
		}
	},
	"PastExpiry": func(t *testing.T, s store.Store) {
		ok(t, s.Revoke(ctx, "j1", time.Now().Add(-time.Second)))
		if revoked(t, s, "j1") {
			t.Fatal("revoked with an expiry in the past")
		}
	},
	"List": func(t *testing.T, s store.Store) {
		var l store.RevocationLister = s
		if m := must[map[string]time.Time](t)(l.Revocations(ctx)); m == nil || len(m) != 0 {
			t.Fatalf("Revocations of an empty store: %#v, want an empty map", m)
		}
		now := time.Now()
		want := map[string]time.Time{
			"j1":            now.Add(time.Hour),
			"j2":            now.Add(2 * time.Hour),
			"a:b%3A%25*?[]": now.Add(time.Hour), // characters keys escape or patterns match
		}
		for jti, until := range want {
			ok(t, s.Revoke(ctx, jti, until))
		}
		ok(t, s.Revoke(ctx, "past", now.Add(-time.Second)))
		ok(t, s.Revoke(ctx, "short", time.Now().Add(expiry)))
		time.Sleep(expiry + 50*time.Millisecond)
		got := must[map[string]time.Time](t)(l.Revocations(ctx))
		// A store may derive the time from a time to live (Redis): allow for
		// rounding and a round trip.
		const slack = time.Second
		for jti, until := range want {
			if g, listed := got[jti]; !listed || g.Before(until.Add(-slack)) || g.After(until.Add(slack)) {
				t.Errorf("Revocations()[%q] = %v (listed: %v), want %v", jti, g, listed, until)
			}
		}
		for jti := range got {
			if _, wanted := want[jti]; !wanted {
				t.Errorf("Revocations() lists %q, expired or never revoked", jti)
			}
		}
		// The map is the caller's.
		got["j1"] = time.Time{}
		delete(got, "j2")
		again := must[map[string]time.Time](t)(l.Revocations(ctx))
		if len(again) != len(want) || again["j1"].IsZero() {
			t.Fatalf("Revocations() after changing an earlier result: %v", again)
		}
	},
}

func claimed(t *testing.T, s store.Store, key string) string {
	t.Helper()
	return must[string](t)(s.GetClaim(ctx, key))
}

var claimTests = map[string]func(*testing.T, store.Store){
	"Once": func(t *testing.T, s store.Store) {
		ok(t, s.Claim(ctx, "k", "first", time.Hour))
		wantErr(t, "second Claim", s.Claim(ctx, "k", "second", time.Hour), store.ErrConflict)
		if v := claimed(t, s, "k"); v != "first" {
			t.Fatalf("GetClaim = %q after a refused claim, want %q", v, "first")
		}
		ok(t, s.Claim(ctx, "other", "", time.Hour)) // keys are independent; a value may be empty
		if v := claimed(t, s, "other"); v != "" {
			t.Fatalf("GetClaim(other) = %q, want the empty value", v)
		}
	},
	"Missing": func(t *testing.T, s store.Store) {
		_, err := s.GetClaim(ctx, "k")
		wantErr(t, "GetClaim", err, store.ErrNotFound)
	},
	"Concurrent": func(t *testing.T, s store.Store) {
		const n = 20
		var wg sync.WaitGroup
		var winners atomic.Int32
		winner := make(chan string, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				v := fmt.Sprint("claimant ", i)
				switch err := s.Claim(ctx, "k", v, time.Hour); {
				case err == nil:
					winners.Add(1)
					winner <- v
				case !errors.Is(err, store.ErrConflict):
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		if w := winners.Load(); w != 1 {
			t.Fatalf("%d of %d concurrent claims succeeded, want 1", w, n)
		}
		if v, want := claimed(t, s, "k"), <-winner; v != want {
			t.Fatalf("GetClaim = %q, want the winner's %q", v, want)
		}
	},
	"Expires": func(t *testing.T, s store.Store) {
		ok(t, s.Claim(ctx, "k", "first", expiry))
		ok(t, s.SetClaim(ctx, "set", "v", expiry))
		claimed(t, s, "k")
		time.Sleep(expiry + 50*time.Millisecond)
		for _, k := range []string{"k", "set"} {
			_, err := s.GetClaim(ctx, k)
			wantErr(t, "GetClaim("+k+") after it expired", err, store.ErrNotFound)
		}
		// An expired claim may be claimed again.
		ok(t, s.Claim(ctx, "k", "second", time.Hour))
		if v := claimed(t, s, "k"); v != "second" {
			t.Fatalf("GetClaim = %q, want %q", v, "second")
		}
	},
	"SetOverwrites": func(t *testing.T, s store.Store) {
		ok(t, s.Claim(ctx, "longer", "claimed", expiry))
		ok(t, s.SetClaim(ctx, "longer", "set", time.Hour))
		ok(t, s.SetClaim(ctx, "shorter", "set", time.Hour))
		ok(t, s.SetClaim(ctx, "shorter", "set again", expiry))
		ok(t, s.SetClaim(ctx, "new", "set", time.Hour)) // a key nobody claimed
		time.Sleep(expiry + 50*time.Millisecond)
		if v := claimed(t, s, "longer"); v != "set" {
			t.Fatalf("GetClaim(longer) = %q, want the value SetClaim gave it, for its time to live", v)
		}
		wantErr(t, "Claim(longer) after SetClaim", s.Claim(ctx, "longer", "x", time.Hour), store.ErrConflict)
		_, err := s.GetClaim(ctx, "shorter")
		wantErr(t, "GetClaim(shorter) past the time to live SetClaim gave it", err, store.ErrNotFound)
		if v := claimed(t, s, "new"); v != "set" {
			t.Fatalf("GetClaim(new) = %q", v)
		}
	},
	"BadTTL": func(t *testing.T, s store.Store) {
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := s.Claim(ctx, "k", "v", ttl); err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("Claim with time to live %v: %v, want an error", ttl, err)
			}
			if err := s.SetClaim(ctx, "k", "v", ttl); err == nil {
				t.Errorf("SetClaim with time to live %v: no error", ttl)
			}
		}
		_, err := s.GetClaim(ctx, "k")
		wantErr(t, "GetClaim after refused claims", err, store.ErrNotFound)
	},
}

func hits(t *testing.T, s store.Store, key string, window time.Duration) int {
	t.Helper()
	n, err := s.Hit(ctx, key, window)
	ok(t, err)
	return n
}

var hitTests = map[string]func(*testing.T, store.Store){
	"CountsInWindow": func(t *testing.T, s store.Store) {
		for want := 1; want <= 5; want++ {
			if n := hits(t, s, "k", time.Hour); n != want {
				t.Fatalf("hit %d counted %d", want, n)
			}
		}
		if n := hits(t, s, "other", time.Hour); n != 1 {
			t.Fatalf("another key's first hit counted %d", n)
		}
	},
	"ResetsAfterWindow": func(t *testing.T, s store.Store) {
		hits(t, s, "k", expiry)
		hits(t, s, "k", expiry)
		if n := hits(t, s, "k", expiry); n != 3 {
			t.Fatalf("third hit counted %d", n)
		}
		time.Sleep(expiry + 50*time.Millisecond)
		if n := hits(t, s, "k", expiry); n != 1 {
			t.Fatalf("first hit of a new window counted %d", n)
		}
	},
	"Concurrent": func(t *testing.T, s store.Store) {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := s.Hit(ctx, "k", time.Hour); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := hits(t, s, "k", time.Hour); n != 21 {
			t.Fatalf("hit after 20 concurrent ones counted %d", n)
		}
	},
	"BadWindow": func(t *testing.T, s store.Store) {
		if _, err := s.Hit(ctx, "k", 0); err == nil {
			t.Fatal("no error for a zero window")
		}
	},
}

// count counts one event of key under l and returns the wait it set.
func count(t *testing.T, s store.Store, l store.Limit, key string) (time.Duration, bool) {
	t.Helper()
	wait, over, err := l.Count(ctx, s, key)
	ok(t, err)
	return wait, over
}

func waiting(t *testing.T, s store.Store, key string) time.Duration {
	t.Helper()
	d, err := store.Wait(ctx, s, key)
	ok(t, err)
	return d
}

var limitTests = map[string]func(*testing.T, store.Store){
	"BackoffGrows": func(t *testing.T, s store.Store) {
		l := store.Limit{Max: 3, Window: time.Hour, Backoff: time.Minute}
		for i := 1; i < l.Max; i++ {
			if wait, over := count(t, s, l, "k"); wait != 0 || over {
				t.Fatalf("event %d of %d: wait %v, over %v", i, l.Max, wait, over)
			}
			if d := waiting(t, s, "k"); d != 0 {
				t.Fatalf("after event %d of %d: Wait = %v", i, l.Max, d)
			}
		}
		for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour} {
			wait, over := count(t, s, l, "k")
			if wait != want || over != (i > 0) {
				t.Fatalf("event %d: wait %v, over %v; want %v, %v", l.Max+i, wait, over, want, i > 0)
			}
			if d := waiting(t, s, "k"); d <= 0 || d > want {
				t.Fatalf("Wait after event %d = %v, want in (0, %v]", l.Max+i, d, want)
			}
		}
		if d := waiting(t, s, "other"); d != 0 {
			t.Fatalf("another key waits %v", d)
		}
	},
	"HardCap": func(t *testing.T, s store.Store) {
		l := store.Limit{Max: 2, Window: time.Hour}
		count(t, s, l, "k")
		if wait, _ := count(t, s, l, "k"); wait != time.Hour {
			t.Fatalf("the last event allowed set a wait of %v, want the window", wait)
		}
	},
	"WaitEnds": func(t *testing.T, s store.Store) {
		l := store.Limit{Max: 1, Window: time.Hour, Backoff: expiry}
		count(t, s, l, "k")
		if d := waiting(t, s, "k"); d <= 0 {
			t.Fatalf("Wait = %v right after the limit", d)
		}
		time.Sleep(expiry + 50*time.Millisecond)
		if d := waiting(t, s, "k"); d != 0 {
			t.Fatalf("Wait = %v after the backoff", d)
		}
	},
	"SharesNoKeys": func(t *testing.T, s store.Store) {
		// The limiter's counters and waits are its own: a claim or a hit
		// under the same name is another record.
		ok(t, s.SetClaim(ctx, "k", "12345", time.Hour))
		hits(t, s, "k", time.Hour)
		if d := waiting(t, s, "k"); d != 0 {
			t.Fatalf("a claim named k makes the limiter wait %v", d)
		}
		if wait, _ := count(t, s, store.Limit{Max: 2, Window: time.Hour}, "k"); wait != 0 {
			t.Fatalf("a hit named k counted towards the limit (wait %v)", wait)
		}
	},
}

func resolve(t *testing.T, s store.Store, in store.SignIn) (store.User, store.Resolution) {
	t.Helper()
	u, res, err := store.ResolveUser(ctx, s, in)
	ok(t, err)
	return u, res
}

var github = store.SignIn{Provider: "github", ProviderAccountID: "42", Type: "oauth", Name: "Ann", Email: "Ann@Example.com", Image: "https://img/ann"}

var resolveTests = map[string]func(*testing.T, store.Store){
	"NewThenStable": func(t *testing.T, s store.Store) {
		u, res := resolve(t, s, github)
		if res != (store.Resolution{Created: true, Linked: true}) || u.ID == "" || u.Name != "Ann" || u.Email != "ann@example.com" || u.Image != "https://img/ann" || !u.EmailVerified.IsZero() {
			t.Fatalf("first sign-in: %+v, %+v (want created and linked)", u, res)
		}
		again := github
		again.Name, again.Image = "Ann B.", "https://img/new"
		u2, res := resolve(t, s, again)
		if res != (store.Resolution{}) {
			t.Fatalf("second sign-in: %+v, want neither created nor linked", res)
		}
		sameUser(t, "second sign-in (the stored user, not refreshed)", u2, u)
		sameUser(t, "GetUserByAccount", must[store.User](t)(s.GetUserByAccount(ctx, "github", "42")), u)
	},
	"WithoutEmail": func(t *testing.T, s store.Store) {
		in := store.SignIn{Provider: "github", ProviderAccountID: "42", Type: "oauth", Name: "Ann"}
		u, res := resolve(t, s, in)
		u2, res2 := resolve(t, s, in)
		if !res.Created || res2.Created || u.ID != u2.ID || u.Email != "" {
			t.Fatalf("got %+v (%+v), %+v (%+v)", u, res, u2, res2)
		}
	},
	"OAuthAccountNotLinked": func(t *testing.T, s store.Store) {
		resolve(t, s, github)
		google := store.SignIn{Provider: "google", ProviderAccountID: "g-1", Type: "oidc", Email: "ann@example.com"}
		_, _, err := store.ResolveUser(ctx, s, google)
		wantErr(t, "sign-in with another provider", err, store.ErrAccountNotLinked)
		_, err = s.GetUserByAccount(ctx, "google", "g-1")
		wantErr(t, "GetUserByAccount(google)", err, store.ErrNotFound)
	},
	"AllowEmailLinking": func(t *testing.T, s store.Store) {
		u, _ := resolve(t, s, github)
		google := store.SignIn{Provider: "google", ProviderAccountID: "g-1", Type: "oidc", Email: "ANN@example.com", AllowEmailLinking: true}
		u2, res := resolve(t, s, google)
		if res != (store.Resolution{Linked: true}) || u2.ID != u.ID {
			t.Fatalf("linked sign-in: %+v (%+v), want user %s, linked, not created", u2, res, u.ID)
		}
		if _, res := resolve(t, s, google); res != (store.Resolution{}) {
			t.Fatalf("second linked sign-in: %+v, want neither created nor linked", res)
		}
		sameUser(t, "GetUserByAccount(google)", must[store.User](t)(s.GetUserByAccount(ctx, "google", "g-1")), u)
	},
	"EmailProviderFindsByEmail": func(t *testing.T, s store.Store) {
		u, _ := resolve(t, s, github)
		email := store.SignIn{Provider: "email", ProviderAccountID: "ann@example.com", Type: "email", Email: "ann@EXAMPLE.com", EmailVerified: true}
		before := time.Now()
		u2, res := resolve(t, s, email)
		if res != (store.Resolution{}) || u2.ID != u.ID || u2.EmailVerified.Before(before) {
			t.Fatalf("email sign-in: %+v (%+v), want user %s with EmailVerified set, nothing linked", u2, res, u.ID)
		}
		sameUser(t, "GetUser", must[store.User](t)(s.GetUser(ctx, u.ID)), u2)
	},
	"EmailProviderCreates": func(t *testing.T, s store.Store) {
		email := store.SignIn{Provider: "email", Type: "email", Email: "bob@example.com", EmailVerified: true}
		u, res := resolve(t, s, email)
		if res != (store.Resolution{Created: true}) || u.Email != "bob@example.com" || u.EmailVerified.IsZero() {
			t.Fatalf("first email sign-in: %+v (%+v), want created, nothing linked", u, res)
		}
		u2, res := resolve(t, s, email)
		if res.Created || u2.ID != u.ID {
			t.Fatalf("second email sign-in: %+v (%+v)", u2, res)
		}
		// A later OAuth sign-in with the address is not linked silently.
		bobGitHub := github
		bobGitHub.Email = "bob@example.com"
		_, _, err := store.ResolveUser(ctx, s, bobGitHub)
		wantErr(t, "github sign-in", err, store.ErrAccountNotLinked)
	},
	"BadInput": func(t *testing.T, s store.Store) {
		for _, in := range []store.SignIn{
			{Type: "oauth", Provider: "github"},
			{Type: "oauth", ProviderAccountID: "42"},
			{Type: "email", Provider: "email"},
		} {
			if _, _, err := store.ResolveUser(ctx, s, in); err == nil {
				t.Errorf("no error for %+v", in)
			}
		}
	},
	"ConcurrentFirstSignIns": func(t *testing.T, s store.Store) {
		concurrentFirstSignIns(t, s, github)
		_, err := s.GetUserByEmail(ctx, "ann@example.com")
		ok(t, err)
	},
	"ConcurrentFirstSignInsWithoutEmail": func(t *testing.T, s store.Store) {
		concurrentFirstSignIns(t, s, store.SignIn{Provider: "github", ProviderAccountID: "42", Type: "oauth"})
	},
	"ConcurrentFirstEmailSignIns": func(t *testing.T, s store.Store) {
		concurrentFirstSignIns(t, s, store.SignIn{Provider: "email", Type: "email", Email: "bob@example.com", EmailVerified: true})
	},
}

// concurrentFirstSignIns signs in 10 times at once and checks that exactly
// one sign-in created the user they all got, and (an account sign-in) that
// exactly one linked the account.
func concurrentFirstSignIns(t *testing.T, s store.Store, in store.SignIn) {
	t.Helper()
	const n = 10
	users := make([]store.User, n)
	res := make([]store.Resolution, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			var err error
			users[i], res[i], err = store.ResolveUser(ctx, s, in)
			if err != nil {
				t.Errorf("sign-in %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	created, linked := 0, 0
	for i := range n {
		if users[i].ID != users[0].ID {
			t.Fatalf("sign-in %d got user %s, sign-in 0 got %s", i, users[i].ID, users[0].ID)
		}
		if res[i].Created {
			created++
		}
		if res[i].Linked {
			linked++
		}
	}
	if created != 1 {
		t.Fatalf("%d of %d sign-ins report a new user, want 1", created, n)
	}
	if want := map[bool]int{true: 0, false: 1}[in.Type == "email"]; linked != want {
		t.Fatalf("%d of %d sign-ins report linking the account, want %d", linked, n, want)
	}
	if _, err := s.GetUser(ctx, users[0].ID); err != nil {
		t.Fatalf("GetUser(%s): %v", users[0].ID, err)
	}
}
