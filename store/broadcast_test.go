package store_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/store"
)

// guard bounds every wait for something that should happen: a failure
// guard, not a timing assertion.
const guard = 5 * time.Second

// events records a subscription's callbacks, in order: "m:<msg>" for a
// message, "resync" for onResync.
type events chan string

func newEvents() events { return make(events, 1000) }

func (e events) onMessage(msg string) { e <- "m:" + msg }
func (e events) onResync()            { e <- "resync" }

// next returns the next event, failing the test when none comes.
func (e events) next(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-e:
		return ev
	case <-time.After(guard):
		t.Fatalf("no event within %v", guard)
		return ""
	}
}

// expect checks that the next events are want.
func (e events) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if ev := e.next(t); ev != w {
			t.Fatalf("event %q, want %q", ev, w)
		}
	}
}

// none checks that no event is pending.
func (e events) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-e:
		t.Fatalf("unexpected event %q", ev)
	default:
	}
}

func subscribe(t *testing.T, r *store.Redis, ctx context.Context, topic string) events {
	t.Helper()
	e := newEvents()
	if err := r.Subscribe(ctx, topic, e.onMessage, e.onResync); err != nil {
		t.Fatal(err)
	}
	return e
}

func publish(t *testing.T, r *store.Redis, topic, msg string) {
	t.Helper()
	if err := r.Publish(ctx, topic, msg); err != nil {
		t.Fatal(err)
	}
}

// testContext is a context that ends with the test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// TestRedisBroadcast publishes between two instances (two clients of one
// server): a message reaches both, the publisher included.
func TestRedisBroadcast(t *testing.T) {
	addr, _ := testredis.Start(t)
	a := openRedis(t, "redis://"+addr, store.RedisOptions{})
	b := openRedis(t, "redis://"+addr, store.RedisOptions{})
	ctx := testContext(t)
	ea := subscribe(t, a, ctx, "sessions")
	eb := subscribe(t, b, ctx, "sessions")

	publish(t, a, "sessions", "jti j1 1700000000")
	ea.expect(t, "m:jti j1 1700000000")
	eb.expect(t, "m:jti j1 1700000000")
	publish(t, b, "sessions", "session abc")
	ea.expect(t, "m:session abc")
	eb.expect(t, "m:session abc")

	// The channel is <prefix>events:<topic>.
	chans, err := a.Client().PubSubChannels(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := store.DefaultRedisPrefix + "events:sessions"; !slices.Equal(chans, []string{want}) {
		t.Errorf("channels %v, want [%s]", chans, want)
	}

	// Neither another topic nor another prefix's topic of the same name is
	// delivered: the message published after them arrives first. (One
	// client's commands run in order.)
	other := openRedis(t, "redis://"+addr, store.RedisOptions{Prefix: "other:"})
	eo := subscribe(t, other, ctx, "sessions")
	publish(t, a, "logs", "not for sessions")
	publish(t, other, "sessions", "other realm")
	publish(t, a, "sessions", "last")
	ea.expect(t, "m:last")
	eb.expect(t, "m:last")
	eo.expect(t, "m:other realm")
	for _, e := range []events{ea, eb, eo} {
		e.none(t) // no resync without a reconnection
	}
}

// TestRedisSubscribeResync restarts the server under a subscription: onResync
// is called, and then messages arrive again.
func TestRedisSubscribeResync(t *testing.T) {
	srv := testredis.NewServer(t)
	a := openRedis(t, "redis://"+srv.Addr, store.RedisOptions{})
	b := openRedis(t, "redis://"+srv.Addr, store.RedisOptions{})
	e := subscribe(t, b, testContext(t), "sessions")
	publish(t, a, "sessions", "before")
	e.expect(t, "m:before")

	for i := range 2 {
		srv.Stop()
		srv.Start()
		// Anything published before the subscription is back is lost: wait
		// for onResync, which says the state must be reloaded, and only then
		// publish.
		e.expect(t, "resync")
		msg := []string{"after", "after again"}[i]
		publish(t, a, "sessions", msg)
		e.expect(t, "m:"+msg)
		e.none(t)
	}
}

// TestRedisSubscribeServerDown: when the server is down, Subscribe returns the
// error, and nothing keeps running in the background.
func TestRedisSubscribeServerDown(t *testing.T) {
	srv := testredis.NewServer(t)
	r := openRedis(t, "redis://"+srv.Addr, store.RedisOptions{})
	srv.Stop()
	e := newEvents()
	if err := r.Subscribe(testContext(t), "sessions", e.onMessage, e.onResync); err == nil {
		t.Fatal("Subscribe succeeded while the server is down")
	}
	srv.Start()
	// The store works again, and so does a new subscription; the failed one
	// did not come back.
	e2 := subscribe(t, r, testContext(t), "sessions")
	publish(t, r, "sessions", "m")
	e2.expect(t, "m:m")
	e.none(t)

	// A context that has ended: its error.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Subscribe(done, "sessions", e.onMessage, e.onResync); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a canceled context: %v", err)
	}
}

// TestRedisSubscribeCancel: when the context ends, the subscription's
// goroutine returns and its callbacks are no longer called.
func TestRedisSubscribeCancel(t *testing.T) {
	addr, _ := testredis.Start(t)
	r := openRedis(t, "redis://"+addr, store.RedisOptions{})
	control := subscribe(t, r, testContext(t), "sessions")

	ctx, cancel := context.WithCancel(context.Background())
	e := newEvents()
	done, err := store.SubscribeDone(r, ctx, "sessions", e.onMessage, e.onResync)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, r, "sessions", "one")
	e.expect(t, "m:one")
	control.expect(t, "m:one")

	cancel()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatalf("the subscription's goroutine still runs %v after the cancel", guard)
	}
	publish(t, r, "sessions", "two")
	control.expect(t, "m:two")
	e.none(t)
}

// TestRedisSubscribeStopsOnClose: closing the store ends its subscriptions.
func TestRedisSubscribeStopsOnClose(t *testing.T) {
	addr, _ := testredis.Start(t)
	r := openRedis(t, "redis://"+addr, store.RedisOptions{})
	e := newEvents()
	done, err := store.SubscribeDone(r, testContext(t), "sessions", e.onMessage, e.onResync)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatalf("the subscription's goroutine still runs %v after Close", guard)
	}
	e.none(t)
}

// TestRedisSubscribeSilentConnection: a connection that stops answering
// without being closed (a peer gone in a network partition) is replaced, with
// onResync.
func TestRedisSubscribeSilentConnection(t *testing.T) {
	defer store.SetPubSubPingEvery(100 * time.Millisecond)()
	addr, _ := testredis.Start(t)
	p := newBlackholeProxy(t, addr)
	a := openRedis(t, "redis://"+addr, store.RedisOptions{})
	b := openRedis(t, "redis://"+p.addr(), store.RedisOptions{})
	e := subscribe(t, b, testContext(t), "sessions")

	// A slow machine may miss a PONG and reconnect spuriously: the resyncs
	// before the freeze do not matter, and a message lost to one is published
	// again (as a real subscriber would reload its state).
	publishUntil := func(msg string) {
		t.Helper()
		publish(t, a, "sessions", msg)
		for {
			switch ev := e.next(t); ev {
			case "m:" + msg:
				return
			case "resync":
				publish(t, a, "sessions", msg)
			default:
				t.Fatalf("event %q, want m:%s", ev, msg)
			}
		}
	}
	publishUntil("before")

	// The subscription's connection now swallows everything, both ways.
	n := p.freeze()
	for {
		if ev := e.next(t); ev != "resync" {
			t.Fatalf("event %q, want resync", ev)
		}
		if p.accepted() > n {
			break // on a connection made after the freeze
		}
	}
	publishUntil("after")
}

// blackholeProxy forwards TCP connections to a server until freeze, which
// makes the connections open at the time drop whatever either side sends,
// without closing them.
type blackholeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*proxiedConn
	wg     sync.WaitGroup
}

type proxiedConn struct {
	client, server net.Conn
	frozen         atomic.Bool
}

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

func (p *blackholeProxy) addr() string { return p.ln.Addr().String() }

func (p *blackholeProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pc := &proxiedConn{client: c, server: s}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		p.wg.Go(func() { pc.pipe(c, s) })
		p.wg.Go(func() { pc.pipe(s, c) })
	}
}

func (pc *proxiedConn) pipe(src, dst net.Conn) {
	defer pc.client.Close()
	defer pc.server.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pc.frozen.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// freeze freezes the open connections and returns how many were accepted.
func (p *blackholeProxy) freeze() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.frozen.Store(true)
	}
	return len(p.conns)
}

func (p *blackholeProxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *blackholeProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, pc := range p.conns {
		_ = pc.client.Close()
		_ = pc.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestRedisRevocationsPrefix: listing revocations sees only its prefix's, even
// when the prefix holds characters that SCAN patterns treat as wildcards.
func TestRedisRevocationsPrefix(t *testing.T) {
	addr, _ := testredis.Start(t)
	until := time.Now().Add(time.Hour)
	stores := map[string]*store.Redis{}
	for _, prefix := range []string{"a*:", "ab:", "[x]:", "x:", `q\?:`, "q?:", "qq:"} {
		r := openRedis(t, "redis://"+addr, store.RedisOptions{Prefix: prefix})
		if err := r.Revoke(ctx, "jti-of-"+prefix, until); err != nil {
			t.Fatal(err)
		}
		stores[prefix] = r
	}
	for prefix, r := range stores {
		got, err := r.Revocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["jti-of-"+prefix]; len(got) != 1 || !ok {
			t.Errorf("prefix %q: Revocations() = %v, want only jti-of-%s", prefix, got, prefix)
		}
	}
}
