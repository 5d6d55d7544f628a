package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// boltLockTimeout bounds how long opening waits for another process's lock on
// the file (a variable so tests need not wait for it).
var boltLockTimeout = 5 * time.Second

// boltPurgeEvery is how often an open file deletes expired records.
const boltPurgeEvery = 5 * time.Minute

// Bucket names. Compound keys join their parts with sep.
var (
	bMeta      = []byte("meta")                // "version" → schema version
	bUsers     = []byte("users")               // id → User
	bByEmail   = []byte("users_by_email")      // email → id
	bAccounts  = []byte("accounts")            // provider, providerAccountID → Account
	bTokens    = []byte("verification_tokens") // identifier, hash → VerificationToken
	bSessions  = []byte("sessions")            // id → Session
	bUserSess  = []byte("user_sessions")       // user id, session id → nothing
	bRevoked   = []byte("revocations")         // jti → revocation
	bHits      = []byte("hits")                // key → counter
	bClaims    = []byte("claims")              // key → claim
	allBuckets = [][]byte{bMeta, bUsers, bByEmail, bAccounts, bTokens, bSessions, bUserSess, bRevoked, bHits, bClaims}
	// expiring lists the buckets whose records have an expiry, which the purge reads.
	expiring = [][]byte{bTokens, bSessions, bRevoked, bHits, bClaims}
)

// boltSchemaVersion changes when a file's records would be misread. A new
// bucket does not change it: opening creates the buckets that are missing.
const boltSchemaVersion = "1"

// Bolt is a Store in a bbolt file: the embedded default. A file can be open
// in one process at a time; within a process, Open shares it among handles
// (Caddy provisions a reloaded config while the old one still runs). It is
// not a Broadcaster: no other instance can share the file.
type Bolt struct {
	f       *boltFile
	release func() error
	once    sync.Once
	closed  atomic.Bool // this handle, not necessarily the file
	err     error
}

// errClosed is returned by a closed handle, even while other handles keep the
// file open.
var errClosed = errors.New("store: database handle is closed")

// BoltPath is where a realm's database lives in Caddy's data directory
// (caddy.AppDataDir()): <dataDir>/authgate/<realm>.db, with "default" for the
// unnamed realm. Bytes of the realm name other than ASCII letters, digits,
// '-' and '_' are written as %XX, so every realm has its own file.
func BoltPath(dataDir, realm string) string {
	if realm == "" {
		realm = "default"
	}
	var name strings.Builder
	for _, c := range []byte(realm) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			name.WriteByte(c)
		default:
			fmt.Fprintf(&name, "%%%02X", c)
		}
	}
	return filepath.Join(dataDir, "authgate", name.String()+".db")
}

// boltFile is an open database and its purge loop.
type boltFile struct {
	db   *bbolt.DB
	stop chan struct{}
	done chan struct{}
}

// boltFiles holds the open database files by absolute path, each with the
// number of handles that use it.
var boltFiles = caddy.NewUsagePool()

// shareBolt returns a new handle to the database at path, opening the file
// when no handle in this process has it open, and closing it when the last
// handle is closed.
func shareBolt(path string) (*Bolt, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolving database path %s: %v", path, err)
	}
	v, _, err := boltFiles.LoadOrNew(abs, func() (caddy.Destructor, error) {
		f, err := openBoltFile(abs)
		if err != nil {
			return nil, err // not f: a nil *boltFile is not a nil Destructor
		}
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	return &Bolt{f: v.(*boltFile), release: func() error {
		_, err := boltFiles.Delete(abs)
		return err
	}}, nil
}

// openBoltFile opens (creating it, and its directory, when missing) the
// database at path. Expired records are deleted when it opens and every few
// minutes while it is open. When another process holds the file, it fails
// after a few seconds.
func openBoltFile(path string) (*boltFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the database's directory: %v", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltLockTimeout, FreelistType: bbolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("database %s is locked by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %v", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get([]byte("version")); v != nil && string(v) != boltSchemaVersion {
			return fmt.Errorf("schema version %s is not %s", v, boltSchemaVersion)
		}
		return meta.Put([]byte("version"), []byte(boltSchemaVersion))
	})
	if err == nil {
		err = purgeBolt(db, time.Now())
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("preparing database %s: %v", path, err)
	}
	f := &boltFile{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go f.purgeLoop()
	return f, nil
}

func (f *boltFile) purgeLoop() {
	defer close(f.done)
	tick := time.NewTicker(boltPurgeEvery)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-tick.C:
			// A failed purge is retried at the next tick; reads never
			// return expired records anyway.
			_ = purgeBolt(f.db, now)
		}
	}
}

// Destruct closes the file, when its last handle is closed.
func (f *boltFile) Destruct() error {
	close(f.stop)
	<-f.done
	return f.db.Close()
}

// purgeBolt deletes every record that has expired at now.
func purgeBolt(db *bbolt.DB, now time.Time) error {
	return db.Update(func(tx *bbolt.Tx) error {
		for _, name := range expiring {
			var expired, index [][]byte
			b := tx.Bucket(name)
			err := b.ForEach(func(k, v []byte) error {
				var r struct {
					UserID  string    `json:"user_id"`
					Expires time.Time `json:"expires"`
				}
				if json.Unmarshal(v, &r) == nil && live(r.Expires, now) {
					return nil
				}
				expired = append(expired, k)
				if r.UserID != "" {
					index = append(index, userSessKey(r.UserID, string(k)))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range expired {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			for _, k := range index {
				if err := tx.Bucket(bUserSess).Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Close releases this handle; the file closes when its last handle does.
// Closing a handle twice is harmless.
func (b *Bolt) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		b.err = b.release()
	})
	return b.err
}

// view and update run fn in a read-only or read-write transaction, unless ctx is done.
func (b *Bolt) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	return b.f.db.View(fn)
}

func (b *Bolt) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	return b.f.db.Update(fn)
}

func (b *Bolt) usable(ctx context.Context) error {
	if b.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// get decodes the JSON at key in bucket into v; ErrNotFound when it is missing.
func get(tx *bbolt.Tx, bucket []byte, key string, v any) error {
	js := tx.Bucket(bucket).Get([]byte(key))
	if js == nil {
		return ErrNotFound
	}
	return json.Unmarshal(js, v)
}

func put(tx *bbolt.Tx, bucket []byte, key string, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), js)
}

func del(tx *bbolt.Tx, bucket []byte, key string) error {
	return tx.Bucket(bucket).Delete([]byte(key))
}

func userSessKey(userID, sessionID string) []byte {
	return []byte(userID + sep + sessionID)
}

func (b *Bolt) CreateUser(ctx context.Context, u User) (User, error) {
	u = newUser(u, time.Now())
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bUsers).Get([]byte(u.ID)) != nil {
			return ErrConflict
		}
		if u.Email != "" {
			if tx.Bucket(bByEmail).Get([]byte(u.Email)) != nil {
				return ErrConflict
			}
			if err := tx.Bucket(bByEmail).Put([]byte(u.Email), []byte(u.ID)); err != nil {
				return err
			}
		}
		return put(tx, bUsers, u.ID, u)
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

func (b *Bolt) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	err := b.view(ctx, func(tx *bbolt.Tx) error { return get(tx, bUsers, id, &u) })
	return u, err
}

func (b *Bolt) GetUserByEmail(ctx context.Context, email string) (User, error) {
	var u User
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		id := tx.Bucket(bByEmail).Get([]byte(lowerEmail(email)))
		if id == nil {
			return ErrNotFound
		}
		return get(tx, bUsers, string(id), &u)
	})
	return u, err
}

func (b *Bolt) UpdateUser(ctx context.Context, u User) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		var stored User
		if err := get(tx, bUsers, u.ID, &stored); err != nil {
			return err
		}
		u = updatedUser(u, stored)
		if u.Email != stored.Email {
			byEmail := tx.Bucket(bByEmail)
			if u.Email != "" {
				if owner := byEmail.Get([]byte(u.Email)); owner != nil && string(owner) != u.ID {
					return ErrConflict
				}
				if err := byEmail.Put([]byte(u.Email), []byte(u.ID)); err != nil {
					return err
				}
			}
			if stored.Email != "" {
				if err := byEmail.Delete([]byte(stored.Email)); err != nil {
					return err
				}
			}
		}
		return put(tx, bUsers, u.ID, u)
	})
}

// DeleteUser implements UserDeleter.
func (b *Bolt) DeleteUser(ctx context.Context, id string) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		var u User
		if err := get(tx, bUsers, id, &u); err != nil {
			return ignoreNotFound(err)
		}
		if u.Email != "" && bytes.Equal(tx.Bucket(bByEmail).Get([]byte(u.Email)), []byte(id)) {
			if err := del(tx, bByEmail, u.Email); err != nil {
				return err
			}
		}
		return del(tx, bUsers, id)
	})
}

func (b *Bolt) LinkAccount(ctx context.Context, a Account) error {
	if err := checkAccount(a); err != nil {
		return err
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		k := a.Provider + sep + a.ProviderAccountID
		if tx.Bucket(bAccounts).Get([]byte(k)) != nil {
			return ErrConflict
		}
		return put(tx, bAccounts, k, a)
	})
}

func (b *Bolt) GetUserByAccount(ctx context.Context, provider, providerAccountID string) (User, error) {
	var u User
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		var a Account
		if err := get(tx, bAccounts, provider+sep+providerAccountID, &a); err != nil {
			return err
		}
		return get(tx, bUsers, a.UserID, &u)
	})
	return u, err
}

func (b *Bolt) CreateVerificationToken(ctx context.Context, t VerificationToken) error {
	t, err := checkToken(t)
	if err != nil {
		return err
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		return put(tx, bTokens, t.Identifier+sep+t.TokenHash, t)
	})
}

func (b *Bolt) UseVerificationToken(ctx context.Context, identifier, tokenHash string) (VerificationToken, error) {
	var t VerificationToken
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		k := identifier + sep + tokenHash
		if err := get(tx, bTokens, k, &t); err != nil {
			return err
		}
		return del(tx, bTokens, k)
	})
	if err == nil && !live(t.Expires, time.Now()) {
		err = ErrNotFound
	}
	if err != nil {
		return VerificationToken{}, err
	}
	return t, nil
}

func (b *Bolt) CreateSession(ctx context.Context, s Session) error {
	s, err := checkSession(s)
	if err != nil {
		return err
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		var old Session
		err := get(tx, bSessions, s.ID, &old)
		if err == nil && live(old.Expires, time.Now()) {
			return ErrConflict
		}
		if err == nil {
			err = deleteSession(tx, old)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return putSession(tx, s)
	})
}

func putSession(tx *bbolt.Tx, s Session) error {
	if err := put(tx, bSessions, s.ID, s); err != nil {
		return err
	}
	return tx.Bucket(bUserSess).Put(userSessKey(s.UserID, s.ID), nil)
}

func (b *Bolt) GetSession(ctx context.Context, id string) (Session, error) {
	var s Session
	err := b.view(ctx, func(tx *bbolt.Tx) error { return get(tx, bSessions, id, &s) })
	if err == nil && !live(s.Expires, time.Now()) {
		err = ErrNotFound
	}
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

func (b *Bolt) UpdateSession(ctx context.Context, s Session) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		var stored Session
		if err := get(tx, bSessions, s.ID, &stored); err != nil {
			return err
		}
		if !live(stored.Expires, time.Now()) {
			return ErrNotFound
		}
		s.UserID = stored.UserID
		s.Expires = utc(s.Expires)
		return putSession(tx, s)
	})
}

func (b *Bolt) DeleteSession(ctx context.Context, id string) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		var s Session
		if err := get(tx, bSessions, id, &s); err != nil {
			return ignoreNotFound(err)
		}
		return deleteSession(tx, s)
	})
}

func deleteSession(tx *bbolt.Tx, s Session) error {
	if err := tx.Bucket(bUserSess).Delete(userSessKey(s.UserID, s.ID)); err != nil {
		return err
	}
	return del(tx, bSessions, s.ID)
}

func (b *Bolt) UserSessions(ctx context.Context, userID string) ([]Session, error) {
	now := time.Now()
	var out []Session
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		prefix := userSessKey(userID, "")
		c := tx.Bucket(bUserSess).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var s Session
			err := get(tx, bSessions, string(k[len(prefix):]), &s)
			if errors.Is(err, ErrNotFound) || err == nil && !live(s.Expires, now) {
				continue // the purge removes the index entry
			}
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

func (b *Bolt) Revoke(ctx context.Context, jti string, until time.Time) error {
	if !live(until, time.Now()) {
		return nil
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		return put(tx, bRevoked, jti, revocation{Expires: utc(until)})
	})
}

// Revocations implements RevocationLister.
func (b *Bolt) Revocations(ctx context.Context) (map[string]time.Time, error) {
	now := time.Now()
	out := map[string]time.Time{}
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bRevoked).ForEach(func(k, v []byte) error {
			// What does not decode counts as expired, as in purgeBolt.
			var r revocation
			if json.Unmarshal(v, &r) == nil && live(r.Expires, now) {
				out[string(k)] = r.Expires
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (b *Bolt) Hit(ctx context.Context, key string, window time.Duration) (int, error) {
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	var c counter
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		if err := get(tx, bHits, key, &c); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		c = c.hit(time.Now(), window)
		return put(tx, bHits, key, c)
	})
	return c.Count, err
}

func (b *Bolt) Claim(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		now := time.Now()
		var c claim
		err := get(tx, bClaims, key, &c)
		if err == nil && live(c.Expires, now) {
			return ErrConflict
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return put(tx, bClaims, key, claim{Value: value, Expires: now.Add(ttl).UTC()})
	})
}

func (b *Bolt) SetClaim(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		return put(tx, bClaims, key, claim{Value: value, Expires: time.Now().Add(ttl).UTC()})
	})
}

func (b *Bolt) GetClaim(ctx context.Context, key string) (string, error) {
	var c claim
	err := b.view(ctx, func(tx *bbolt.Tx) error { return get(tx, bClaims, key, &c) })
	if err == nil && !live(c.Expires, time.Now()) {
		err = ErrNotFound
	}
	if err != nil {
		return "", err
	}
	return c.Value, nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

var (
	_ Store            = (*Bolt)(nil)
	_ UserDeleter      = (*Bolt)(nil)
	_ caddy.Destructor = (*boltFile)(nil)
)
