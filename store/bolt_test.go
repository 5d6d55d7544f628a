package store_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/store"
	"github.com/authgate/caddy-authgate/store/storetest"
)

func newBolt(tb testing.TB) store.Store {
	tb.Helper()
	b, err := store.Open(ctx, store.Options{Path: filepath.Join(tb.TempDir(), "authgate.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newBolt(t) })
}

// openBolt opens the file at path as another process would.
func openBolt(t *testing.T, path string) *store.Bolt {
	t.Helper()
	b, err := store.OpenBoltAlone(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBoltCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "authgate")
	path := filepath.Join(dir, "default.db")
	openBolt(t, path).Close()
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestBoltPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authgate.db")
	b := openBolt(t, path)
	u, err := b.CreateUser(ctx, store.User{Name: "Ann", Email: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	tok := store.VerificationToken{Identifier: "ann@example.com", TokenHash: "h1", Expires: time.Now().Add(time.Hour)}
	if err := b.CreateVerificationToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBolt(t, path)
	defer b.Close()
	got, err := b.GetUserByEmail(ctx, "ann@example.com")
	if err != nil || got.ID != u.ID || got.Name != "Ann" || !got.Created.Equal(u.Created) {
		t.Fatalf("user after reopening: %+v, %v; want %+v", got, err, u)
	}
	if _, err := b.UseVerificationToken(ctx, "ann@example.com", "h1"); err != nil {
		t.Fatalf("token after reopening: %v", err)
	}
}

func TestBoltLocked(t *testing.T) {
	defer store.SetBoltLockTimeout(100 * time.Millisecond)()
	path := filepath.Join(t.TempDir(), "authgate.db")
	b := openBolt(t, path)
	defer b.Close()
	_, err := store.OpenBoltAlone(path)
	if err == nil || !strings.Contains(err.Error(), "database "+path+" is locked by another process") {
		t.Fatalf("opening a locked file: %v", err)
	}
}

func TestBoltPurgesExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authgate.db")
	b := openBolt(t, path)
	fillExpiring(t, b, "short", 100*time.Millisecond)
	fillExpiring(t, b, "long", time.Hour)
	time.Sleep(150 * time.Millisecond)
	if err := store.PurgeBolt(b); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"verification_tokens": 1, "sessions": 1, "user_sessions": 1, "revocations": 1, "hits": 1, "claims": 1}
	if got := must(store.BoltRecords(b)); !maps.Equal(got, want) {
		t.Fatalf("records after the purge: %v, want %v", got, want)
	}

	// Opening purges too.
	fillExpiring(t, b, "short2", 100*time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	b = openBolt(t, path)
	defer b.Close()
	if got := must(store.BoltRecords(b)); !maps.Equal(got, want) {
		t.Fatalf("records after reopening: %v, want %v", got, want)
	}
}

func TestBoltPath(t *testing.T) {
	for realm, want := range map[string]string{
		"":         "/data/authgate/default.db",
		"corp":     "/data/authgate/corp.db",
		"Corp_2-x": "/data/authgate/Corp_2-x.db",
		"../etc":   "/data/authgate/%2E%2E%2Fetc.db",
		"a.b":      "/data/authgate/a%2Eb.db",
	} {
		if got := store.BoltPath("/data", realm); got != filepath.FromSlash(want) {
			t.Errorf("BoltPath(/data, %q) = %s, want %s", realm, got, want)
		}
	}
}

func TestBoltRefusesClosedUse(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "authgate.db"))
	b.Close()
	if _, err := b.GetSession(ctx, "s1"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSession on a closed store: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
