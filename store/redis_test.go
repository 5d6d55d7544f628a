package store_test

import (
	"context"
	"errors"
	"fmt"
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
	checkTTLs(t, openRedis(t, "redis://"+addr+"/2", store.RedisOptions{}), store.DefaultRedisPrefix, "*")
}

// checkTTLs writes a record of every kind in r, whose prefix is prefix, and
// checks the times to live of the keys that match the SCAN pattern match:
// they must all be r's.
func checkTTLs(t *testing.T, r *store.Redis, prefix, match string) {
	fillExpiring(t, r, "x", time.Hour)
	in := store.SignIn{Provider: "github", ProviderAccountID: "42", Type: "oauth", Email: "ann@example.com"}
	u, _, err := store.ResolveUser(ctx, r, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateSession(ctx, store.Session{ID: "s2", UserID: u.ID, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	kinds := map[string]bool{}
	for k, ttl := range keyTTLs(t, r.Client(), match) {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			t.Errorf("key %q lacks the prefix %q", k, prefix)
			continue
		}
		kind, _, _ := strings.Cut(rest, ":")
		kinds[kind] = true
		permanent := kind == "user" || kind == "user_email" || kind == "account"
		switch {
		case permanent && ttl != -1:
			t.Errorf("%s expires in %v, want it kept", k, ttl)
		case !permanent && (ttl <= 0 || ttl > time.Hour):
			t.Errorf("%s: PTTL %v, want it to expire within the hour", k, ttl)
		}
	}
	for _, kind := range []string{"user", "user_email", "account", "vtoken", "session", "user_sessions", "revoked", "hit", "claim"} {
		if !kinds[kind] {
			t.Errorf("no %s key written", kind)
		}
	}
}

// keyTTLs returns the keys that match the SCAN pattern match on c's server,
// or on every master of its cluster, with their PTTL.
func keyTTLs(t *testing.T, c redis.UniversalClient, match string) map[string]time.Duration {
	t.Helper()
	var mu sync.Mutex
	out := map[string]time.Duration{}
	each := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, match, 100).Iterator()
		for iter.Next(ctx) {
			ttl, err := c.PTTL(ctx, iter.Val()).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			out[iter.Val()] = ttl
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
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
	if _, err := r.GetClaim(ctx, "k1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetClaim while the server is down: %v, want ErrUnavailable", err)
	}
	if _, err := r.UserSessions(ctx, "u1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("UserSessions while the server is down: %v, want ErrUnavailable", err)
	}
	srv.Start()
	if err := r.SetClaim(ctx, "k2", "v2", time.Hour); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if v, err := r.GetClaim(ctx, "k2"); err != nil || v != "v2" {
		t.Fatalf("GetClaim after the restart: %q, %v", v, err)
	}
	// An answer is not unavailability.
	if _, err := r.GetClaim(ctx, "k1"); !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetClaim of a key lost in the restart: %v, want ErrNotFound", err)
	}
}

// TestRedisEmailLeftovers: what a crash between two writes of a user leaves
// behind (see claimEmail) never blocks the address for good.
func TestRedisEmailLeftovers(t *testing.T) {
	addr, _ := testredis.Start(t)
	checkEmailLeftovers(t, openRedis(t, "redis://"+addr, store.RedisOptions{Prefix: "left:"}), "left:")
}

func checkEmailLeftovers(t *testing.T, r *store.Redis, prefix string) {
	c := r.Client()
	set := func(key, value string, ttl time.Duration) {
		t.Helper()
		if err := c.Set(ctx, prefix+key, value, ttl).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// An address key naming a user who is gone (a crash after DeleteUser
	// deleted the record), or who has another address (a crash in UpdateUser
	// before it released the old one).
	set("user_email:gone@example.com", "nobody", 0)
	moved, err := r.CreateUser(ctx, store.User{Email: "new@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	set("user_email:old@example.com", moved.ID, 0)
	for _, email := range []string{"gone@example.com", "old@example.com"} {
		if _, err := r.GetUserByEmail(ctx, email); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetUserByEmail(%s) through a key left behind: %v, want ErrNotFound", email, err)
		}
		u, err := r.CreateUser(ctx, store.User{Email: email})
		if err != nil {
			t.Errorf("CreateUser with %s, whose key was left behind: %v", email, err)
			continue
		}
		if got, err := r.GetUserByEmail(ctx, email); err != nil || got.ID != u.ID {
			t.Errorf("GetUserByEmail(%s) = %+v, %v; want the new user %s", email, got, err, u.ID)
		}
	}
	if got, err := r.GetUserByEmail(ctx, "new@example.com"); err != nil || got.ID != moved.ID {
		t.Errorf("GetUserByEmail(new@example.com) = %+v, %v; want %s", got, err, moved.ID)
	}
	// A pending claim is a user being created: not taken over.
	set("user_email:pending@example.com", "being-created", time.Minute)
	if _, err := r.CreateUser(ctx, store.User{Email: "pending@example.com"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser with an address being claimed: %v, want ErrConflict", err)
	}
}
