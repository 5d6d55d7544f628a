package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/store"
	"github.com/authgate/caddy-authgate/store/storetest"
)

// TestMain stops the Redis Cluster that the cluster tests share, started by
// the first of them.
func TestMain(m *testing.M) {
	code := m.Run()
	testredis.StopSharedCluster()
	os.Exit(code)
}

// clusterPrefixes numbers the key prefixes of the stores on the shared
// cluster, so that no two tests share keys.
var clusterPrefixes atomic.Int32

// openCluster opens a store on the shared cluster with a prefix of its own.
func openCluster(tb testing.TB) *store.Redis {
	tb.Helper()
	return openClusterAt(tb, newClusterPrefix())
}

func newClusterPrefix() string { return fmt.Sprintf("cluster%d:", clusterPrefixes.Add(1)) }

// openClusterAt opens a store on the shared cluster with the given prefix:
// another instance of the one that has it.
func openClusterAt(tb testing.TB, prefix string) *store.Redis {
	tb.Helper()
	return openRedis(tb, testredis.SharedCluster(tb).URL(), store.RedisOptions{Prefix: prefix})
}

// TestRedisCluster runs the conformance suite on a Redis Cluster of three
// masters and three replicas: every operation must keep to one hash slot per
// command, script or transaction (else CROSSSLOT), and find what it lists on
// every master.
func TestRedisCluster(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openCluster(t) })
}

// TestRedisClusterClient: a URL with addr= parameters opens a cluster client,
// one without opens a client of one server even on a cluster node.
func TestRedisClusterClient(t *testing.T) {
	c := testredis.SharedCluster(t)
	if _, ok := openCluster(t).Client().(*redis.ClusterClient); !ok {
		t.Errorf("%s: not a cluster client", c.URL())
	}
	if _, ok := openRedis(t, "redis://"+c.Addrs()[0], store.RedisOptions{}).Client().(*redis.Client); !ok {
		t.Errorf("redis://%s: not a client of one server", c.Addrs()[0])
	}
}

// TestRedisClusterTTLs: on a cluster too, every key expires but a user's and
// an account's, and the keys are those of a server.
func TestRedisClusterTTLs(t *testing.T) {
	c := testredis.SharedCluster(t)
	prefix := newClusterPrefix()
	checkTTLs(t, openRedis(t, c.URL(), store.RedisOptions{Prefix: prefix}), prefix, prefix+"*")
}

// TestRedisClusterEmailLeftovers: TestRedisEmailLeftovers on the cluster.
func TestRedisClusterEmailLeftovers(t *testing.T) {
	prefix := newClusterPrefix()
	checkEmailLeftovers(t, openClusterAt(t, prefix), prefix)
}

// TestRedisClusterSpread: the keys of many records land on every master, and
// Revocations finds every revocation, wherever it is.
func TestRedisClusterSpread(t *testing.T) {
	prefix := newClusterPrefix()
	r := openClusterAt(t, prefix)
	until := time.Now().Add(time.Hour)
	const n = 60
	for i := range n {
		if err := r.Revoke(ctx, fmt.Sprint("jti-", i), until); err != nil {
			t.Fatal(err)
		}
	}
	perMaster := map[string]int{}
	for k := range keyTTLsByNode(t, r.Client(), prefix+"*") {
		perMaster[k.node]++
	}
	if len(perMaster) != 3 {
		t.Errorf("%d revocations are on %d masters (%v), want them on all three", n, len(perMaster), perMaster)
	}
	got, err := r.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("Revocations() lists %d, want %d", len(got), n)
	}
}

// nodeKey is a key and the address of the master that holds it.
type nodeKey struct{ node, key string }

// keyTTLsByNode is keyTTLs with each key's master.
func keyTTLsByNode(t *testing.T, c redis.UniversalClient, match string) map[nodeKey]time.Duration {
	t.Helper()
	cc := c.(*redis.ClusterClient)
	var mu sync.Mutex
	out := map[nodeKey]time.Duration{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		for k, ttl := range keyTTLs(t, c, match) {
			mu.Lock()
			out[nodeKey{c.Options().Addr, k}] = ttl
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRedisClusterBroadcast: a message published through one node reaches
// subscribers on every instance.
func TestRedisClusterBroadcast(t *testing.T) {
	a, prefix := openCluster(t), newClusterPrefix()
	b, b2 := openClusterAt(t, prefix), openClusterAt(t, prefix)
	ctx := testContext(t)
	ea := subscribe(t, a, ctx, "sessions")
	eb := subscribe(t, b, ctx, "sessions")
	publish(t, b2, "sessions", "sid s1 1700000000")
	eb.expect(t, "m:sid s1 1700000000")
	publish(t, a, "sessions", "to a")
	ea.expect(t, "m:to a")
	ea.none(t)
	eb.none(t)
}

// TestRedisClusterURL: the cluster URL's checks, and no password in errors.
func TestRedisClusterURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
	}{
		{"redis://a:7000?addr=b:7001&addr=c:7002", true},
		{"rediss://ann:pw@a:7000?addr=b:7001", true},
		{"redis://a:7000/0?addr=b:7001", true},
		{"redis://a:7000/0", false},
		{"redis://a:7000?dial_timeout=1s", false},
		{"unix:///run/redis.sock", false},
	} {
		if got := store.IsRedisClusterURL(tc.url); got != tc.cluster {
			t.Errorf("IsRedisClusterURL(%s) = %v", tc.url, got)
		}
	}
	for _, tc := range []struct{ url, want string }{
		{"redis://ann:s3cret@127.0.0.1:1/1?addr=127.0.0.1:2", "database 0 only"},
		{"redis://ann:s3cret@127.0.0.1:1?addr=nohost", "addr param"},
		{"redis://ann:s3cret@127.0.0.1:1?addr=127.0.0.1:2&db=1", "unexpected option"},
		{"redis://ann:s3cret@127.0.0.1:1?addr=127.0.0.1:2&dial_timeout=1s", "connecting to redis at 127.0.0.1:1,127.0.0.1:2"},
	} {
		_, err := store.NewRedis(ctx, tc.url, store.RedisOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error %v, want one about %q without the password", tc.url, err, tc.want)
		}
	}
	err := store.CheckOptions(store.Options{Type: "redis", URL: "unix:///run/redis.sock?addr=b:7001"})
	if err == nil || !strings.Contains(err.Error(), "cluster URL") {
		t.Errorf("a unix:// cluster URL: %v", err)
	}
	if err := store.CheckOptions(store.Options{Type: "redis", URL: "redis://a:7000?addr=b:7001&addr=c:7002"}); err != nil {
		t.Errorf("a cluster URL: %v", err)
	}
}

// TestRedisClusterFailover kills the master that the subscription is on, and
// checks that once its replica took over, the subscription is back (with
// onResync), what was written before is still there (replicated before the
// kill: Redis replicates asynchronously), and every operation works again,
// without reopening the store. The killed node is restarted at the end, as a
// replica, for the tests that come after.
func TestRedisClusterFailover(t *testing.T) {
	c := testredis.SharedCluster(t)
	prefix := newClusterPrefix()
	a, b := openClusterAt(t, prefix), openClusterAt(t, prefix) // two instances
	e := subscribe(t, b, testContext(t), "sessions")

	u, _, err := store.ResolveUser(ctx, a, store.SignIn{Provider: "email", Type: "email", Email: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	cc := a.Client().(*redis.ClusterClient)
	node, err := cc.MasterForKey(ctx, prefix+"events:sessions")
	if err != nil {
		t.Fatal(err)
	}
	dead := node.Options().Addr
	// Sessions on every master, until one is on the master that dies.
	var sessions []string
	onDead := ""
	for i := 0; onDead == "" || i < 12; i++ {
		id := fmt.Sprint("s", i)
		if err := a.CreateSession(ctx, store.Session{ID: id, UserID: u.ID, Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, id)
		if n, err := cc.MasterForKey(ctx, prefix+"session:"+id); err == nil && n.Options().Addr == dead {
			onDead = id
		}
	}
	if err := a.Revoke(ctx, "j1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicated(guard); err != nil {
		t.Fatal(err)
	}

	if err := c.Kill(dead); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetSession(ctx, onDead); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetSession of a session on the dead master: %v, want ErrUnavailable", err)
	}
	t.Cleanup(func() {
		if err := c.Restart(dead); err != nil {
			t.Error(err)
		}
		if err := c.WaitHealthy(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	start := time.Now()
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s failed over after %v", dead, time.Since(start).Round(time.Millisecond))
	e.expectWithin(t, 30*time.Second, "resync")
	t.Logf("the subscription is back %v after the kill", time.Since(start).Round(time.Millisecond))
	publish(t, a, "sessions", "after")
	e.expect(t, "m:after")

	// What a instance would do next: everything answers, with what was there.
	if got, err := a.GetUserByEmail(ctx, "ann@example.com"); err != nil || got.ID != u.ID {
		t.Errorf("GetUserByEmail after the failover: %+v, %v", got, err)
	}
	listed, err := b.UserSessions(ctx, u.ID)
	if err != nil || len(listed) != len(sessions) {
		t.Errorf("UserSessions after the failover: %d sessions, %v; want %d", len(listed), err, len(sessions))
	}
	for _, id := range sessions {
		if _, err := b.GetSession(ctx, id); err != nil {
			t.Errorf("GetSession(%s) after the failover: %v", id, err)
		}
	}
	if m, err := b.Revocations(ctx); err != nil || m["j1"].IsZero() {
		t.Errorf("Revocations after the failover: %v, %v", m, err)
	}
	if _, _, err := store.ResolveUser(ctx, b, store.SignIn{Provider: "email", Type: "email", Email: "bob@example.com"}); err != nil {
		t.Errorf("a new user after the failover: %v", err)
	}
}

// expectWithin is expect with a longer wait, for what a failover brings.
func (e events) expectWithin(t *testing.T, d time.Duration, want string) {
	t.Helper()
	select {
	case ev := <-e:
		if ev != want {
			t.Fatalf("event %q, want %q", ev, want)
		}
	case <-time.After(d):
		t.Fatalf("no event within %v, want %q", d, want)
	}
}

// TestRedisClusterKeySizes measures what each kind of record costs in Redis's
// memory (MEMORY USAGE, which counts the key, the value and Redis's overhead
// for them), with the default prefix of the unnamed realm and records shaped
// as authgate writes them; `go test -v` prints the table the README shows.
// It fails only when a record costs more than a kilobyte: something grew.
func TestRedisClusterKeySizes(t *testing.T) {
	// As long as the unnamed realm's "authgate:default:", and new each run.
	prefix := fmt.Sprintf("authgate:%07d:", clusterPrefixes.Add(1))
	r := openClusterAt(t, prefix)
	c := r.Client()
	usage := func(key string) int64 {
		t.Helper()
		n, err := c.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", key, err)
		}
		return n
	}
	now := time.Now()
	sid := func(i int) string { return fmt.Sprintf("%043d", i) }  // as long as authgate's random ids
	hash := func(i int) string { return fmt.Sprintf("%064x", i) } // a hex SHA-256

	u, _, err := store.ResolveUser(ctx, r, store.SignIn{Provider: "github", ProviderAccountID: "12345678", Type: "oauth",
		Name: "Ann Example", Email: "ann.example@example.com", Image: "https://avatars.githubusercontent.com/u/12345678?v=4"})
	if err != nil {
		t.Fatal(err)
	}
	user := usage(prefix + "user:" + u.ID)
	email := usage(prefix + "user_email:ann.example@example.com")
	account := usage(prefix + "account:github:12345678")

	data := map[string]any{"name": u.Name, "email": u.Email, "picture": u.Image, "sub": u.ID}
	const many = 100
	var setOfOne int64 // a user's first session also makes the user's set
	for i := range many + 1 {
		s := store.Session{ID: hash(i), UserID: u.ID, Expires: now.Add(30 * 24 * time.Hour), Data: data}
		if i == many {
			s = store.Session{ID: "jwt:" + sid(i), UserID: u.ID, Expires: s.Expires} // a jwt session's listing
		}
		if err := r.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			setOfOne = usage(prefix + "user_sessions:" + u.ID)
		}
	}
	dbSession := usage(prefix + "session:" + hash(0))
	jwtListing := usage(prefix + "session:jwt%3A" + sid(many))
	member := (usage(prefix+"user_sessions:"+u.ID) - setOfOne) / many

	if err := r.Revoke(ctx, sid(1), now.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	revocation := usage(prefix + "revoked:" + sid(1))
	if err := r.CreateVerificationToken(ctx, store.VerificationToken{Identifier: u.Email, TokenHash: hash(1), Expires: now.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	token := usage(prefix + "vtoken:" + hash(1) + ":" + u.Email)

	for _, row := range []struct {
		what  string
		bytes int64
	}{
		{"user signed in with OAuth (user, user_email, account)", user + email + account},
		{"user signed in with an email link (user, user_email)", user + email},
		{"database session (session, its id in user_sessions)", dbSession + member},
		{"jwt session's listing for administrators (session, user_sessions)", jwtListing + member},
		{"revocation (revoked)", revocation},
		{"email sign-in token (vtoken)", token},
	} {
		t.Logf("%-70s %4d bytes", row.what, row.bytes)
		if row.bytes <= 0 || row.bytes > 1024 {
			t.Errorf("%s: %d bytes, want at most 1 KiB", row.what, row.bytes)
		}
	}
	t.Logf("(user %d, user_email %d, account %d, session %d, jwt listing %d, set member %d; a user's set of sessions with one %d)",
		user, email, account, dbSession, jwtListing, member, setOfOne)
}
