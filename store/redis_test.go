package store_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/store"
	"github.com/authgate/caddy-authgate/store/storetest"
)

// redisStores starts a server and returns a function that opens a store on
// it, each with its own key prefix.
func redisStores(tb testing.TB) func(testing.TB) store.Store {
	addr, _ := testredis.Start(tb)
	var n atomic.Int32
	return func(tb testing.TB) store.Store {
		return openRedis(tb, "redis://"+addr, store.RedisOptions{Prefix: fmt.Sprintf("test%d:", n.Add(1))})
	}
}

func openRedis(tb testing.TB, url string, opts store.RedisOptions) *store.Redis {
	tb.Helper()
	r, err := store.NewRedis(ctx, url, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRedis(t *testing.T) {
	open := redisStores(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestRedisTTLs checks that every key expires, but a user's and an account's.
func TestRedisTTLs(t *testing.T) {
	addr, _ := testredis.Start(t)
	r := openRedis(t, "redis://"+addr+"/2", store.RedisOptions{})
	fillExpiring(t, r, "x", time.Hour)
	in := store.SignIn{Provider: "github", ProviderAccountID: "42", Type: "oauth", Email: "ann@example.com"}
	u, _, err := store.ResolveUser(ctx, r, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateSession(ctx, store.Session{ID: "s2", UserID: u.ID, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	c := r.Client()
	kinds := map[string]bool{}
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		rest, ok := strings.CutPrefix(k, store.DefaultRedisPrefix)
		if !ok {
			t.Errorf("key %q lacks the prefix %q", k, store.DefaultRedisPrefix)
			continue
		}
		kind, _, _ := strings.Cut(rest, ":")
		kinds[kind] = true
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		permanent := kind == "user" || kind == "user_email" || kind == "account"
		switch {
		case permanent && ttl != -1:
			t.Errorf("%s expires in %v, want it kept", k, ttl)
		case !permanent && (ttl <= 0 || ttl > time.Hour):
			t.Errorf("%s: PTTL %v, want it to expire within the hour", k, ttl)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"user", "user_email", "account", "vtoken", "session", "user_sessions", "revoked", "hit", "claim"} {
		if !kinds[kind] {
			t.Errorf("no %s key written", kind)
		}
	}
}

func TestRedisBadURL(t *testing.T) {
	for _, url := range []string{
		"redis://ann:s3cret@[::1",                          // unparsable
		"redis://ann:s3cret@127.0.0.1:1/0?dial_timeout=1s", // refused
		"http://ann:s3cret@127.0.0.1:6379",
	} {
		_, err := store.NewRedis(ctx, url, store.RedisOptions{})
		if err == nil {
			t.Errorf("%s: no error", url)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// TestRedisReconnects checks that a store keeps working after the server
// restarts (losing its data, as this one has no persistence).
func TestRedisReconnects(t *testing.T) {
	srv := testredis.NewServer(t)
	r := openRedis(t, "redis://"+srv.Addr, store.RedisOptions{})
	if err := r.SetClaim(ctx, "k1", "v1", time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := r.GetClaim(ctx, "k1"); err == nil {
		t.Fatal("no error while the server is down")
	}
	srv.Start()
	if err := r.SetClaim(ctx, "k2", "v2", time.Hour); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if v, err := r.GetClaim(ctx, "k2"); err != nil || v != "v2" {
		t.Fatalf("GetClaim after the restart: %q, %v", v, err)
	}
}
