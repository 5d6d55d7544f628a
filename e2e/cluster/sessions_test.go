package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/internal/testsite"
	"github.com/authgate/caddy-authgate/store"
)

// TestSharedSessions runs two instances with jwt sessions over one Redis: a
// session started on A works on B, a sign-out on B is honoured by A, which has
// the token cached and only hears of it through the revocation broadcast (the
// test logs how long that took), jwt sessions and credentials sign-in carry on
// while Redis is down, and once Redis is back the broadcast works again while
// what the instances knew before it lost its data still holds. Finally A alone
// loses Redis (A reaches it through a proxy, which is cut): a sign-out on B
// meanwhile is missed by A's subscription, and A catches up when it reconnects.
func TestSharedSessions(t *testing.T) {
	rs := testredis.NewServer(t)
	proxy := newProxy(t, rs.Addr)
	const prefix = "shared:"
	up := newUpstream(t)
	users := testsite.CredentialsProvider(usersFile(t, "alice", "bob"))
	a := startInstance(t, "A", up, false, siteConfig{Realm: users + redisStore(proxy.Addr, prefix)})
	b := startInstance(t, "B", up, false, siteConfig{Realm: users + redisStore(rs.Addr, prefix)})
	waitSubscribers(t, rs.Addr, prefix, 2)

	// A session started on A is good on both.
	alice := signIn(t, a, "alice")
	if strings.Count(alice, ".") != 4 {
		t.Fatalf("jwt strategy: cookie %q is not a compact JWE", alice)
	}
	for _, in := range []*instance{a, b} {
		wantUpstreamUser(t, api(t, in.base+"/app", alice), "alice")
	}

	// Signed out on B: refused by B at once, by A (which has the token cached)
	// once the broadcast reaches it.
	signOut(t, b, alice)
	wantSignedOut(t, api(t, b.base+"/app", alice))
	refusedEventually(t, a, alice, "alice's cookie signed out on B, sent to A")

	bob := signIn(t, a, "bob")
	for _, in := range []*instance{a, b} {
		wantStatus(t, api(t, in.base+"/app", bob), http.StatusOK)
	}

	// Redis goes away: jwt sessions need no store, credentials sign-in neither
	// (only the record that lists the session for administrators is missed).
	rs.Stop()
	for _, in := range []*instance{a, b} {
		wantStatus(t, api(t, in.base+"/app", bob), http.StatusOK)
		wantSignedOut(t, api(t, in.base+"/app", alice))
	}
	alice2 := signIn(t, b, "alice")
	for _, in := range []*instance{a, b} {
		wantUpstreamUser(t, api(t, in.base+"/app", alice2), "alice")
	}
	a.alive(t)
	b.alive(t)

	// Redis is back, empty (no persistence). Once the instances have
	// resubscribed, sign-outs propagate again, both ways.
	rs.Start()
	waitSubscribers(t, rs.Addr, prefix, 2)
	signOut(t, b, alice2)
	refusedEventually(t, a, alice2, "after Redis came back: alice's cookie signed out on B, sent to A")
	bob2 := signIn(t, a, "bob")
	wantStatus(t, api(t, b.base+"/app", bob2), http.StatusOK)
	signOut(t, a, bob2)
	refusedEventually(t, b, bob2, "after Redis came back: bob's cookie signed out on A, sent to B")

	// Both instances are past their resync now (each handled an event after
	// it). Redis lost the revocation of alice's first cookie, but the instances
	// knew it: a resync must not forget revocations, or a Redis restart would
	// bring signed-out (perhaps stolen) cookies back to life.
	for _, in := range []*instance{a, b} {
		wantSignedOut(t, api(t, in.base+"/app", alice))
		wantStatus(t, api(t, in.base+"/app", bob), http.StatusOK)
	}

	// A alone loses Redis. B signs bob out meanwhile: A's subscription misses
	// the event, so A, which has bob's token cached, still lets it through.
	// When A reconnects it reloads the revocations (resync) and refuses it.
	bob3 := signIn(t, b, "bob")
	wantStatus(t, api(t, a.base+"/app", bob3), http.StatusOK)
	proxy.Cut()
	signOut(t, b, bob3)
	wantSignedOut(t, api(t, b.base+"/app", bob3))
	wantStatus(t, api(t, a.base+"/app", bob3), http.StatusOK)
	proxy.Restore()
	waitSubscribers(t, rs.Addr, prefix, 2)
	refusedEventually(t, a, bob3, "once A resubscribed, a cookie signed out on B while A was cut off from Redis, sent to A")
	wantStatus(t, api(t, a.base+"/app", bob), http.StatusOK)
}

// sessionID is the id under which the store keeps a database session: the
// hex SHA-256 of the cookie's value.
func sessionID(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// TestDatabaseSessions runs two instances with database sessions over one
// Redis: the cookie is an opaque id, a session works on both instances, a
// sign-out on one is honoured by the other while the other still has the
// session cached (see cacheWitness), an administrator lists and revokes a
// user's sessions on one instance and the other refuses them likewise; without
// Redis, requests get 503 (a page for browsers, JSON for scripts) and nothing
// crashes; when Redis is back, service resumes without restarting Caddy.
func TestDatabaseSessions(t *testing.T) {
	redisServer := testredis.NewServer(t)
	const prefix = "db:"
	st, err := store.NewRedis(t.Context(), "redis://"+redisServer.Addr+"/0", store.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	up := newUpstream(t)
	cfg := siteConfig{Realm: testsite.CredentialsProvider(usersFile(t, "alice", "bob", "carol", "admin", "witness")) + redisStore(redisServer.Addr, prefix) +
		"\t\tsession {\n\t\t\tstrategy database\n\t\t}\n" +
		"\t\tadmin {\n\t\t\trequire " + bt + `token.sub == "admin"` + bt + "\n\t\t}\n"}
	a := startInstance(t, "A", up, false, cfg)
	b := startInstance(t, "B", up, false, cfg)
	waitSubscribers(t, redisServer.Addr, prefix, 2)

	t.Run("sign-out", func(t *testing.T) {
		witness := newCacheWitness(t, a, st)
		alice := signIn(t, a, "alice")
		if strings.Contains(alice, ".") || len(alice) < 32 {
			t.Fatalf("database strategy: cookie %q is not an opaque id", alice)
		}
		if _, err := decodeToken(t, testSecret, alice); err == nil {
			t.Fatal("database strategy: the cookie decodes as a session token")
		}
		for _, in := range []*instance{a, b} {
			wantUpstreamUser(t, api(t, in.base+"/app", alice), "alice")
		}
		// A has the session cached now: only the broadcast can tell it.
		signOut(t, b, alice)
		wantSignedOut(t, api(t, b.base+"/app", alice))
		refusedEventually(t, a, alice, "alice's session signed out on B, sent to A")
		witness.stillCached(t)
	})

	t.Run("admin", func(t *testing.T) {
		witness := newCacheWitness(t, b, st)
		alice1, alice2 := signIn(t, a, "alice"), signIn(t, b, "alice")
		bob := signIn(t, b, "bob")
		for _, in := range []*instance{a, b} { // cached everywhere
			for _, v := range []string{alice1, alice2, bob} {
				wantStatus(t, api(t, in.base+"/app", v), http.StatusOK)
			}
		}
		admin := signIn(t, a, "admin")

		list := func() []string {
			t.Helper()
			r := api(t, a.base+"/.auth/admin/sessions?user=alice", admin)
			wantStatus(t, r, http.StatusOK)
			var body struct {
				User     string
				Sessions []struct{ ID, Kind, Expires string }
			}
			if err := jsonUnmarshal(r, &body); err != nil || body.User != "alice" {
				t.Fatalf("%s: %q (%v)", r.what, r.Body, err)
			}
			var ids []string
			for _, s := range body.Sessions {
				if s.Kind != "database" {
					t.Errorf("session %s: kind %q, want database", s.ID, s.Kind)
				}
				if exp, err := time.Parse(time.RFC3339, s.Expires); err != nil || exp.Before(time.Now()) {
					t.Errorf("session %s: expires %q", s.ID, s.Expires)
				}
				ids = append(ids, s.ID)
			}
			slices.Sort(ids)
			return ids
		}
		want := []string{sessionID(alice1), sessionID(alice2)}
		slices.Sort(want)
		if got := list(); !slices.Equal(got, want) {
			t.Fatalf("alice's sessions listed %q, want %q (the hashes of her two cookies)", got, want)
		}

		// Not for others: a non-admin gets 403, a signed-out request 401.
		wantStatus(t, api(t, a.base+"/.auth/admin/sessions?user=alice", bob), http.StatusForbidden)
		wantStatus(t, api(t, a.base+"/.auth/admin/sessions?user=alice", ""), http.StatusUnauthorized)
		revoke := func(v string, body map[string]any) response {
			t.Helper()
			tok, c := csrf(t, a)
			body["csrfToken"] = tok
			cookies := []*http.Cookie{c}
			if v != "" {
				cookies = append(cookies, sessionC(v))
			}
			return mustDo(t, request{method: http.MethodPost, url: a.base + "/.auth/admin/revoke", accept: jsonAccept, cookies: cookies, json: body})
		}
		wantStatus(t, revoke(bob, map[string]any{"user": "alice"}), http.StatusForbidden)
		wantStatus(t, revoke("", map[string]any{"user": "alice"}), http.StatusUnauthorized)
		// The CSRF token is checked.
		r := mustDo(t, request{method: http.MethodPost, url: a.base + "/.auth/admin/revoke", accept: jsonAccept,
			cookies: []*http.Cookie{sessionC(admin)}, json: map[string]any{"user": "alice", "csrfToken": "forged"}})
		wantStatus(t, r, http.StatusForbidden)
		for _, v := range []string{alice1, alice2} {
			wantStatus(t, api(t, b.base+"/app", v), http.StatusOK)
		}

		// The administrator revokes alice's sessions on A: B, which has them
		// cached, refuses them; bob is untouched.
		r = revoke(admin, map[string]any{"user": "alice"})
		wantStatus(t, r, http.StatusOK)
		if m, err := jsonBody(r); err != nil || m["revoked"] != float64(2) {
			t.Fatalf("%s: %q, want {\"revoked\":2}", r.what, r.Body)
		}
		refusedEventually(t, b, alice1, "alice's first session revoked on A, sent to B")
		refusedEventually(t, b, alice2, "alice's second session revoked on A, sent to B")
		witness.stillCached(t)
		for _, v := range []string{alice1, alice2} {
			wantSignedOut(t, api(t, a.base+"/app", v))
		}
		wantStatus(t, api(t, b.base+"/app", bob), http.StatusOK)
		if got := list(); len(got) != 0 {
			t.Errorf("after the revocation alice still has sessions %q", got)
		}
	})

	t.Run("Redis down and back", func(t *testing.T) {
		// A session neither instance has read yet, so neither has it cached.
		carol := signIn(t, a, "carol")
		redisServer.Stop()

		// Each answer waits for the Redis client's retries: send them together.
		tok, c := csrf(t, a)
		var rqs []request
		for _, in := range []*instance{a, b} {
			rqs = append(rqs,
				request{url: in.base + "/app", accept: htmlAccept, cookies: []*http.Cookie{sessionC(carol)}},
				request{url: in.base + "/app", accept: jsonAccept, cookies: []*http.Cookie{sessionC(carol)}},
				request{url: in.base + "/.auth/session", accept: jsonAccept, cookies: []*http.Cookie{sessionC(carol)}})
		}
		// Signing in needs the store now: 503, try again.
		rqs = append(rqs, request{method: http.MethodPost, url: a.base + "/.auth/callback/credentials", accept: htmlAccept,
			cookies: []*http.Cookie{c}, form: map[string][]string{"username": {"bob"}, "password": {"bob-password"}, "csrfToken": {tok}}})
		answers := doAll(t, rqs...)
		for i := 0; i < 6; i += 3 {
			r := answers[i]
			wantStatus(t, r, http.StatusServiceUnavailable)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("%s: Content-Type %q, want a page for a browser", r.what, ct)
			}
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After", r.what)
			}
			for _, leak := range []string{"redis", "dial tcp", "connection refused", "goroutine"} {
				if strings.Contains(strings.ToLower(r.Body), leak) {
					t.Errorf("%s: the page leaks %q", r.what, leak)
				}
			}
			for _, r := range answers[i+1 : i+3] {
				wantStatus(t, r, http.StatusServiceUnavailable)
				if m, err := jsonBody(r); err != nil || m["error"] != "SessionUnavailable" {
					t.Errorf("%s: %q, want {\"error\":\"SessionUnavailable\"}", r.what, r.Body)
				}
			}
		}
		r := answers[6]
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s while Redis is down: no Retry-After", r.what)
		}
		for _, in := range []*instance{a, b} {
			in.alive(t)
			if n := in.logCount("panic"); n > 0 {
				t.Fatalf("instance %s logged a panic", in.name)
			}
			if in.logCount("the session store is unavailable") == 0 {
				t.Errorf("instance %s did not log why it answered 503", in.name)
			}
		}

		// Redis is back without its data (no persistence): carol's session is
		// gone, which is no longer an error, and service resumes without
		// restarting Caddy. (The instances forget their cached sessions when
		// they resubscribe: the witness below comes after that.)
		redisServer.Start()
		waitSubscribers(t, redisServer.Addr, prefix, 2)
		for _, in := range []*instance{a, b} {
			var last response
			took := testsite.Eventually(t, patience, "instance "+in.name+" answers again after Redis came back", func() error {
				if last = api(t, in.base+"/app", carol); last.StatusCode == http.StatusServiceUnavailable {
					return errors.New("503")
				}
				return nil
			})
			wantSignedOut(t, last)
			t.Logf("instance %s answered again after Redis came back, %v after both instances resubscribed", in.name, took.Round(time.Millisecond))
		}
		witness := newCacheWitness(t, b, st)
		carol = signIn(t, a, "carol")
		for _, in := range []*instance{a, b} {
			wantStatus(t, api(t, in.base+"/app", carol), http.StatusOK)
		}
		signOut(t, a, carol)
		refusedEventually(t, b, carol, "after Redis came back: carol's session signed out on A, sent to B")
		witness.stillCached(t)
	})
}

// cacheWitness is a database session that an instance holds in its cache
// although the store no longer has it: the test deleted it there behind the
// instances' backs, without the event a sign-out sends. The instance lets it
// through until its cached copy expires (an instance reads a database session
// from the store again after a few seconds), and as long as it does, every
// session it cached after the witness is still cached too. So when such a
// session is refused while the witness still passes, the instance was told of
// the sign-out (the broadcast) rather than reading the store again, however
// long the test took.
type cacheWitness struct {
	in *instance
	v  string
}

// newCacheWitness signs the user "witness" in on in, has in cache the
// session, deletes it from the store and checks that in still lets it through:
// the control that shows a sign-out elsewhere reaches a cached session only
// by the broadcast. Sessions the test wants to check must be cached on in
// after this.
func newCacheWitness(t *testing.T, in *instance, st *store.Redis) cacheWitness {
	t.Helper()
	w := cacheWitness{in: in, v: signIn(t, in, "witness")}
	wantStatus(t, api(t, in.base+"/app", w.v), http.StatusOK)
	if err := st.DeleteSession(t.Context(), sessionID(w.v)); err != nil {
		t.Fatalf("deleting the witness session from Redis: %v", err)
	}
	if r := api(t, in.base+"/app", w.v); r.StatusCode != http.StatusOK {
		t.Fatalf("%s: a session deleted from the store without an event answers %d at once, want 200 from the cache: the test relies on instance %s caching database sessions", r.what, r.StatusCode, in.name)
	}
	return w
}

// stillCached fails the test when the instance no longer lets the witness
// through: its cached sessions may have expired, and a refusal it gave may come
// from reading the store again instead of from the broadcast.
func (w cacheWitness) stillCached(t *testing.T) {
	t.Helper()
	if r := api(t, w.in.base+"/app", w.v); r.StatusCode != http.StatusOK {
		t.Fatalf("instance %s no longer has the witness session cached (%s answers %d), so the refusal above may have come from its cache expiring rather than from the broadcast: either the broadcast did not reach it, or the test ran too slowly to tell", w.in.name, r.what, r.StatusCode)
	}
	t.Logf("instance %s still had the sessions cached: the refusals came from the broadcast", w.in.name)
}

func jsonUnmarshal(r response, v any) error {
	return json.Unmarshal([]byte(r.Body), v)
}
