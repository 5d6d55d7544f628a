package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/store"
)

func TestCheckOptions(t *testing.T) {
	const (
		badURL  = "store redis: want a URL such as redis://host:port/db, rediss://… or unix://…"
		unknown = `store: unknown type "mysql": want bolt, memory or redis`
	)
	for _, tc := range []struct {
		o    store.Options
		want string // "" for no error
	}{
		{store.Options{}, ""},
		{store.Options{Type: "bolt"}, ""},
		{store.Options{Type: "bolt", Path: "/var/lib/authgate.db", Realm: "corp", DataDir: "/data"}, ""},
		{store.Options{Type: "memory", Realm: "corp"}, ""},
		{store.Options{Type: "redis", URL: "redis://localhost:6379/0"}, ""},
		{store.Options{Type: "redis", URL: "rediss://ann:s3cret@redis.example.com:6380", Prefix: "x:"}, ""},
		{store.Options{Type: "redis", URL: "unix:///run/redis.sock"}, ""},

		{store.Options{Type: "mysql"}, unknown},
		{store.Options{Type: "Bolt"}, `store: unknown type "Bolt": want bolt, memory or redis`},
		{store.Options{Type: "redis"}, badURL},
		{store.Options{Type: "redis", URL: "localhost:6379"}, badURL},
		{store.Options{Type: "redis", URL: "http://localhost:6379"}, badURL},
		{store.Options{Type: "redis", URL: "redis://ann:s3cret@[::1"}, badURL}, // unparsable, and the message shows no password
		{store.Options{Type: "redis", URL: "{env.REDIS_URL}"}, badURL},         // placeholders are the caller's
		{store.Options{Type: "redis", URL: "redis://localhost", Path: "x.db"}, "store redis: path is an option of the bolt store"},
		{store.Options{Prefix: "x:"}, "store bolt: url and prefix are options of the redis store"},
		{store.Options{Type: "bolt", URL: "redis://localhost"}, "store bolt: url and prefix are options of the redis store"},
		{store.Options{Type: "memory", Path: "x.db"}, "store memory: takes no path, url or prefix"},
		{store.Options{Type: "memory", Prefix: "x:"}, "store memory: takes no path, url or prefix"},
	} {
		err := store.CheckOptions(tc.o)
		if got := errString(err); got != tc.want {
			t.Errorf("CheckOptions(%+v) = %q, want %q", tc.o, got, tc.want)
		}
		// Open refuses the same, before it touches anything.
		if tc.want != "" {
			if _, err := store.Open(ctx, tc.o); errString(err) != tc.want {
				t.Errorf("Open(%+v): %v, want %q", tc.o, err, tc.want)
			}
		}
	}
}

func TestTypesAreChecked(t *testing.T) {
	for _, typ := range store.Types {
		o := store.Options{Type: typ}
		if typ == "redis" {
			o.URL = "redis://localhost"
		}
		if err := store.CheckOptions(o); err != nil {
			t.Errorf("type %s: %v", typ, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func open(t *testing.T, o store.Options) store.Store {
	t.Helper()
	s, err := store.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func closeStore(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSharesBolt opens a file as two configs of one process do during a
// reload: the file is opened once, and closed with its last handle.
func TestOpenSharesBolt(t *testing.T) {
	defer store.SetBoltLockTimeout(100 * time.Millisecond)()
	path := filepath.Join(t.TempDir(), "authgate.db")
	a := open(t, store.Options{Path: path})
	// The same file by another name is the same shared file.
	rel, err := filepath.Rel(must(os.Getwd()), path)
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, store.Options{Type: "bolt", Path: rel})
	c := open(t, store.Options{Path: path})
	u := must(a.CreateUser(ctx, store.User{Name: "Ann"}))

	closeStore(t, a)
	closeStore(t, a) // a second Close is harmless, and not b's
	if _, err := a.GetUser(ctx, u.ID); err == nil {
		t.Fatal("a closed handle still works")
	}
	if _, err := b.GetUser(ctx, u.ID); err != nil {
		t.Fatalf("another handle after the first closed: %v", err)
	}
	closeStore(t, b)
	if _, err := c.GetUser(ctx, u.ID); err != nil {
		t.Fatalf("the last handle after the others closed: %v", err)
	}
	if _, err := store.OpenBoltAlone(path); err == nil {
		t.Fatal("another process opened the file while a handle holds it")
	}

	closeStore(t, c)
	alone := openBolt(t, path) // the file is released
	if _, err := alone.GetUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}

	// Open fails while another process holds the file, and works once it
	// let go: the failure left nothing behind in the pool.
	if _, err := store.Open(ctx, store.Options{Path: path}); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("Open of a locked file: %v", err)
	}
	alone.Close()
	d := open(t, store.Options{Path: path})
	defer d.Close()
	if _, err := d.GetUser(ctx, u.ID); err != nil {
		t.Fatalf("reopened after every handle was closed: %v", err)
	}
}

func TestOpenBoltDefaultPath(t *testing.T) {
	dir := t.TempDir()
	for _, realm := range []string{"", "corp"} {
		s := open(t, store.Options{Realm: realm, DataDir: dir})
		closeStore(t, s)
		if _, err := os.Stat(store.BoltPath(dir, realm)); err != nil {
			t.Errorf("realm %q: %v", realm, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "authgate", "default.db")); err != nil {
		t.Errorf("the unnamed realm's file: %v", err)
	}
}

// TestOpenKeepsMemoryAcrossReload opens a realm's memory store as a config
// reload does (the new config opens it before the old one closes it): users,
// revocations and claims survive; once the last handle is closed, they are
// gone.
func TestOpenKeepsMemoryAcrossReload(t *testing.T) {
	realm := t.Name() // no other test shares it
	old := open(t, store.Options{Type: "memory", Realm: realm})
	u := must(old.CreateUser(ctx, store.User{Email: "ann@example.com"}))
	if err := old.Revoke(ctx, "j1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := old.Claim(ctx, "k", "v", time.Hour); err != nil {
		t.Fatal(err)
	}

	other := open(t, store.Options{Type: "memory", Realm: realm + "-other"})
	defer other.Close()
	if _, err := other.GetUser(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another realm's store has the user: %v", err)
	}

	reloaded := open(t, store.Options{Type: "memory", Realm: realm})
	closeStore(t, old)
	closeStore(t, old)
	if got, err := reloaded.GetUserByEmail(ctx, "ann@example.com"); err != nil || got.ID != u.ID {
		t.Fatalf("user after the reload: %+v, %v", got, err)
	}
	if _, revoked := must(reloaded.Revocations(ctx))["j1"]; !revoked {
		t.Fatal("revocation lost in the reload")
	}
	if v, err := reloaded.GetClaim(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("claim after the reload: %q, %v", v, err)
	}

	closeStore(t, reloaded)
	fresh := open(t, store.Options{Type: "memory", Realm: realm})
	defer fresh.Close()
	if _, err := fresh.GetUser(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user still there after every handle was closed: %v", err)
	}
}

func TestOpenMemoryUnnamedRealm(t *testing.T) {
	a := open(t, store.Options{Type: "memory"})
	defer a.Close()
	b := open(t, store.Options{Type: "memory", Realm: "default"})
	defer b.Close()
	if err := a.Claim(ctx, t.Name(), "v", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetClaim(ctx, t.Name()); err != nil {
		t.Fatalf(`realm "" and realm "default" are not the same store: %v`, err)
	}
}

func TestOpenRedisPrefix(t *testing.T) {
	addr, _ := testredis.Start(t)
	for _, tc := range []struct {
		realm, prefix, want string
	}{
		{"", "", "authgate:default:"},
		{"corp", "", "authgate:corp:"},
		{"corp", "mine:", "mine:"},
	} {
		s := open(t, store.Options{Type: "redis", URL: "redis://" + addr, Realm: tc.realm, Prefix: tc.prefix})
		if err := s.SetClaim(ctx, "k", "v", time.Hour); err != nil {
			t.Fatal(err)
		}
		c := s.(*store.Redis).Client()
		if v, err := c.Get(ctx, tc.want+"claim:k").Result(); err != nil || v != "v" {
			t.Errorf("realm %q, prefix %q: key %sclaim:k = %q, %v", tc.realm, tc.prefix, tc.want, v, err)
		}
		if err := c.Del(ctx, tc.want+"claim:k").Err(); err != nil {
			t.Fatal(err)
		}
		closeStore(t, s)
	}
}
