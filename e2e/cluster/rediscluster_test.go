package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// clusterStore is the store line of a realm on the Redis Cluster at url.
func clusterStore(url, prefix string) string {
	return fmt.Sprintf("\t\tstore redis %s {\n\t\t\tprefix %s\n\t\t}\n", url, prefix)
}

const databaseStrategy = "\t\tsession {\n\t\t\tstrategy database\n\t\t}\n"

// clusterClient is a client of the cluster for the test's own looks.
func clusterClient(t *testing.T, cl *testredis.Cluster) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitClusterSubscribers waits until n clients are subscribed to the realm's
// events channel, wherever in the cluster (PUBSUB NUMSUB counts a node's
// own subscribers).
func waitClusterSubscribers(t *testing.T, c *redis.ClusterClient, prefix string, n int) {
	t.Helper()
	channel := prefix + "events:sessions"
	var got int64
	took := testsite.Eventually(t, patience, fmt.Sprintf("%d subscribers to %s", n, channel), func() error {
		var mu sync.Mutex
		got = 0
		err := c.ForEachShard(t.Context(), func(ctx context.Context, node *redis.Client) error {
			m, err := node.PubSubNumSub(ctx, channel).Result()
			mu.Lock()
			got += m[channel]
			mu.Unlock()
			return err
		})
		if err == nil && got < int64(n) {
			err = fmt.Errorf("%d subscribed", got)
		}
		return err
	})
	t.Logf("%d instances subscribed to %s after %v", got, channel, took.Round(time.Millisecond))
}

// keysPerMaster counts the keys with the prefix on each master.
func keysPerMaster(t *testing.T, c *redis.ClusterClient, prefix string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int{}
	err := c.ForEachMaster(t.Context(), func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		n := 0
		for iter.Next(ctx) {
			n++
		}
		mu.Lock()
		out[node.Options().Addr] = n
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// linkPattern finds email sign-in links in an instance's log (mailer log).
var linkPattern = regexp.MustCompile(`http://127\.0\.0\.1:\d+/\.auth/callback/email\?[^"\s\\]+`)

// emailLink asks the instance for a sign-in link for addr and returns the
// link it logged, pointed at the instance on.
func emailLink(t *testing.T, in *instance, addr string, on *instance) string {
	t.Helper()
	before := len(linkPattern.FindAllString(in.logs(), -1))
	tok, c := csrf(t, in)
	r := mustDo(t, request{method: http.MethodPost, url: in.base + "/.auth/signin/email", accept: htmlAccept,
		cookies: []*http.Cookie{c}, form: url.Values{"email": {addr}, "csrfToken": {tok}, "callbackUrl": {in.base + "/app"}}})
	wantStatus(t, r, http.StatusFound)
	var link string
	testsite.Eventually(t, patience, "the sign-in link in "+in.name+"'s log", func() error {
		links := linkPattern.FindAllString(in.logs(), -1)
		if len(links) <= before {
			return fmt.Errorf("%d links logged", len(links))
		}
		link = links[len(links)-1]
		return nil
	})
	u, err := url.Parse(link)
	if err != nil || u.Query().Get("email") != addr {
		t.Fatalf("link %q: not one for %s (%v)", link, addr, err)
	}
	return on.base + u.RequestURI()
}

// useLink follows a sign-in link and returns the session cookie it sets.
func useLink(t *testing.T, link string) string {
	t.Helper()
	r := mustDo(t, request{url: link, accept: htmlAccept})
	wantStatus(t, r, http.StatusFound)
	sc := setCookie(r, sessionCookie)
	if sc == nil || sc.Value == "" {
		t.Fatalf("%s: signed in without a session cookie; Location %q", r.what, r.Header.Get("Location"))
	}
	return sc.Value
}

// TestRedisClusterInstances runs two pairs of instances on a Redis Cluster of
// three masters and three replicas: jwt sessions (credentials and email
// links) on one pair, database sessions on the other. A session started on
// one instance works on the other, a sign-out on one is refused by the other
// (which had it cached: the broadcast crosses the cluster), an email link
// asked for on one instance signs in on the other, and a second link finds
// the same user; the records are spread over more than one master.
func TestRedisClusterInstances(t *testing.T) {
	cl := testredis.SharedCluster(t)
	cc := clusterClient(t, cl)
	up := newUpstream(t)
	users := testsite.CredentialsProvider(usersFile(t, "alice", "bob", "carol", "dave"))
	const jwtPrefix, dbPrefix = "rcjwt:", "rcdb:"
	// An email provider needs the realm's url: each instance has its own.
	email := func(port int) string {
		return fmt.Sprintf("\t\turl http://127.0.0.1:%d\n", port) +
			"\t\tprovider email {\n\t\t\tmailer log\n\t\t\tfrom \"Test <auth@example.com>\"\n\t\t}\n" +
			"\t\tcallbacks {\n\t\t\tsign_in {\n\t\t\t\tdefault allow\n\t\t\t}\n\t\t}\n"
	}
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	a := startInstanceOn(t, "A", portA, up, false, siteConfig{Realm: users + email(portA) + clusterStore(cl.URL(), jwtPrefix)})
	b := startInstanceOn(t, "B", portB, up, false, siteConfig{Realm: users + email(portB) + clusterStore(cl.URL(), jwtPrefix)})
	c := startInstance(t, "C", up, false, siteConfig{Realm: users + clusterStore(cl.URL(), dbPrefix) + databaseStrategy})
	d := startInstance(t, "D", up, false, siteConfig{Realm: users + clusterStore(cl.URL(), dbPrefix) + databaseStrategy})
	waitClusterSubscribers(t, cc, jwtPrefix, 2)
	waitClusterSubscribers(t, cc, dbPrefix, 2)

	for _, pair := range [][2]*instance{{a, b}, {c, d}} {
		one, other := pair[0], pair[1]
		t.Run(one.name+other.name, func(t *testing.T) {
			sessions := map[string]string{}
			for i, user := range []string{"alice", "bob", "carol", "dave"} {
				sessions[user] = signIn(t, pair[i%2], user)
			}
			if jwt := strings.Count(sessions["alice"], ".") == 4; jwt != (one == a) {
				t.Fatalf("%s: a session cookie %q, want a %s", one.name, sessions["alice"], map[bool]string{true: "JWE", false: "database session id"}[one == a])
			}
			for user, v := range sessions {
				for _, in := range pair {
					wantUpstreamUser(t, api(t, in.base+"/app", v), user)
				}
			}
			// Both have alice's session cached: only the broadcast tells them.
			signOut(t, other, sessions["alice"])
			wantSignedOut(t, api(t, other.base+"/app", sessions["alice"]))
			refusedEventually(t, one, sessions["alice"], "alice signed out on "+other.name+", sent to "+one.name)
			signOut(t, one, sessions["bob"])
			refusedEventually(t, other, sessions["bob"], "bob signed out on "+one.name+", sent to "+other.name)
			for _, in := range pair {
				wantUpstreamUser(t, api(t, in.base+"/app", sessions["carol"]), "carol")
			}
		})
	}

	t.Run("email", func(t *testing.T) {
		erin := useLink(t, emailLink(t, a, "erin@example.com", b))
		sub := upstreamSaw(t, api(t, a.base+"/app", erin)).User
		if len(sub) != 36 {
			t.Fatalf("erin's id %q: want the UUID of a stored user", sub)
		}
		wantUpstreamUser(t, api(t, b.base+"/app", erin), sub)
		again := useLink(t, emailLink(t, b, "erin@example.com", a))
		wantUpstreamUser(t, api(t, b.base+"/app", again), sub)
	})

	// A dozen more sessions on each pair: keys in random slots, which all
	// land on one master with a probability of 3^-11.
	for i := range 12 {
		signIn(t, []*instance{a, b, c, d}[i%4], "dave")
	}
	for _, prefix := range []string{jwtPrefix, dbPrefix} {
		per := keysPerMaster(t, cc, prefix)
		used := 0
		for _, n := range per {
			if n > 0 {
				used++
			}
		}
		t.Logf("keys under %s per master: %v", prefix, per)
		if used < 2 {
			t.Errorf("the keys under %s are on %d master(s) (%v), want them spread", prefix, used, per)
		}
	}
}

// probe is one kind of request the failover test keeps sending.
type probe struct {
	name string
	send func() (response, error)
	// ok tells a good answer; anything else but a 503 with Retry-After fails.
	ok func(response) bool
}

// statuses counts the answers of each probe.
type statuses struct {
	mu     sync.Mutex
	counts map[string]map[string]int // probe → answer → count
	bad    []string                  // answers that are neither ok nor 503 with Retry-After
	lastOK map[string]time.Time
}

func (s *statuses) record(p probe, r response, err error) {
	answer := "error"
	switch {
	case err != nil:
		answer = "no answer: " + err.Error()
	case p.ok(r):
		answer = fmt.Sprint(r.StatusCode)
	case r.StatusCode == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "":
		answer = "503"
	default:
		answer = fmt.Sprintf("%d %s", r.StatusCode, r.Header.Get("Location"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[p.name] == nil {
		s.counts[p.name] = map[string]int{}
	}
	s.counts[p.name][answer]++
	if err == nil && p.ok(r) {
		s.lastOK[p.name] = time.Now()
	} else if answer != "503" {
		s.bad = append(s.bad, p.name+": "+answer)
	}
}

// TestRedisClusterFailover kills (SIGKILL) the master that holds a database
// session, the session key of a user signed in before, while four instances
// (jwt on A and B, database sessions on C and D) serve requests without a
// pause: sessions made before the kill, and sign-ins, on every instance. Once
// the cluster promoted the master's replica, every session made before works
// on every instance, sign-ins work, and the instances hear each other's
// sign-outs; meanwhile no request was answered but as it should be or with a
// 503 and Retry-After (never a 500, an error page, or no answer).
func TestRedisClusterFailover(t *testing.T) {
	cl := testredis.SharedCluster(t)
	cc := clusterClient(t, cl)
	up := newUpstream(t)
	users := testsite.CredentialsProvider(usersFile(t, "alice", "bob", "carol", "dave", "erin", "frank"))
	const jwtPrefix, dbPrefix = "fojwt:", "fodb:"
	a := startInstance(t, "A", up, false, siteConfig{Realm: users + clusterStore(cl.URL(), jwtPrefix)})
	b := startInstance(t, "B", up, false, siteConfig{Realm: users + clusterStore(cl.URL(), jwtPrefix)})
	c := startInstance(t, "C", up, false, siteConfig{Realm: users + clusterStore(cl.URL(), dbPrefix) + databaseStrategy})
	d := startInstance(t, "D", up, false, siteConfig{Realm: users + clusterStore(cl.URL(), dbPrefix) + databaseStrategy})
	all := []*instance{a, b, c, d}
	waitClusterSubscribers(t, cc, jwtPrefix, 2)
	waitClusterSubscribers(t, cc, dbPrefix, 2)

	// Sessions before the failover: on each instance, of users spread over
	// the masters.
	type session struct {
		user, value string
		pair        []*instance
	}
	var before []session
	for i, user := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		for _, pair := range [][]*instance{{a, b}, {c, d}} {
			before = append(before, session{user, signIn(t, pair[i%2], user), pair})
		}
	}
	// The master to kill holds the first database session.
	var victim session
	for _, s := range before {
		if s.pair[0] == c {
			victim = s
			break
		}
	}
	node, err := cc.MasterForKey(t.Context(), dbPrefix+"session:"+sessionID(victim.value))
	if err != nil {
		t.Fatal(err)
	}
	dead := node.Options().Addr
	if err := cl.WaitReplicated(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	var probes []probe
	for _, s := range before {
		for _, in := range s.pair {
			probes = append(probes, probe{
				name: fmt.Sprintf("%s's session on %s", s.user, in.name),
				send: func() (response, error) {
					return do(request{url: in.base + "/app", accept: jsonAccept, cookies: []*http.Cookie{sessionC(s.value)}})
				},
				ok: func(r response) bool {
					return r.StatusCode == http.StatusOK && strings.Contains(r.Body, `"user":"`+s.user+`"`)
				},
			})
		}
	}
	for _, in := range all {
		probes = append(probes, probe{
			name: "sign-in on " + in.name,
			send: func() (response, error) { return trySignIn(in, "frank") },
			ok: func(r response) bool {
				return r.StatusCode == http.StatusFound && r.Header.Get("Location") == in.base+"/app" && setCookie(r, sessionCookie) != nil
			},
		})
	}

	// The probes start as the master dies: C and D have not read the database
	// sessions yet (a sign-in does not cache its session), so some first
	// reads fall in the failover, and must get 503.
	st := &statuses{counts: map[string]map[string]int{}, lastOK: map[string]time.Time{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := p.send()
				st.record(p, r, err)
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	stopProbes := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopProbes()

	if err := cl.Kill(dead); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Restart(dead); err != nil {
			t.Error(err)
		}
		if err := cl.WaitHealthy(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	killed := time.Now()
	if err := cl.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	t.Logf("killed master %s; its replica took over after %v", dead, promoted.Sub(killed).Round(time.Millisecond))
	// Every probe answers as it should again, each after the promotion.
	took := testsite.Eventually(t, patience, "every probe answered well after the promotion", func() error {
		st.mu.Lock()
		defer st.mu.Unlock()
		var waiting []string
		for _, p := range probes {
			if !st.lastOK[p.name].After(promoted) {
				waiting = append(waiting, p.name)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("still waiting for %s", strings.Join(waiting, ", "))
		}
		return nil
	})
	stopProbes()
	t.Logf("every probe answered well %v after the promotion", took.Round(time.Millisecond))
	names := make([]string, 0, len(st.counts))
	for name := range st.counts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Logf("%-28s %v", name, st.counts[name])
	}
	if len(st.bad) > 0 {
		t.Errorf("%d answers were neither good nor 503 with Retry-After, the first: %q", len(st.bad), st.bad[:min(len(st.bad), 10)])
	}

	// After the failover: sessions of before work everywhere, new ones too,
	// and sign-outs reach the other instance.
	for _, s := range before {
		for _, in := range s.pair {
			wantUpstreamUser(t, api(t, in.base+"/app", s.value), s.user)
		}
	}
	for _, pair := range [][]*instance{{a, b}, {c, d}} {
		v := signIn(t, pair[0], "carol")
		wantUpstreamUser(t, api(t, pair[1].base+"/app", v), "carol")
		signOut(t, pair[1], v)
		refusedEventually(t, pair[0], v, "after the failover, carol signed out on "+pair[1].name+", sent to "+pair[0].name)
	}
	for _, in := range all {
		in.alive(t)
	}
}

// trySignIn is signIn as a probe: the answer, whatever it is.
func trySignIn(in *instance, username string) (response, error) {
	r, err := do(request{url: in.base + "/.auth/csrf", accept: jsonAccept})
	if err != nil || r.StatusCode != http.StatusOK {
		return r, err
	}
	c := setCookie(r, csrfCookie)
	tok, _, _ := strings.Cut(strings.TrimPrefix(r.Body, `{"csrfToken":"`), `"`)
	if c == nil {
		return r, nil
	}
	return do(request{method: http.MethodPost, url: in.base + "/.auth/callback/credentials", accept: htmlAccept,
		cookies: []*http.Cookie{{Name: c.Name, Value: c.Value}},
		form: url.Values{"username": {username}, "password": {username + "-password"},
			"csrfToken": {tok}, "callbackUrl": {in.base + "/app"}}})
}
