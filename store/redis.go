package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix starts every key a Redis store writes, unless
// RedisOptions.Prefix says otherwise.
const DefaultRedisPrefix = "authgate:"

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Prefix starts every key, so that several realms or applications can
	// share a database. Default: DefaultRedisPrefix.
	Prefix string
	// TLS, when set, is used for the connection, also for a redis:// URL (a
	// rediss:// URL alone uses TLS with the system's roots). Its ServerName
	// defaults to the URL's host.
	TLS *tls.Config
}

// Redis is a Store in a Redis server (6.2 or later, for GETDEL), shared by
// every instance that uses the same server and prefix. Users and accounts
// are kept until deleted; every other key expires with its record.
//
// Keys, after the prefix (parts that may contain ':' are escaped):
//
//	user:<id>                        User (JSON)
//	user_email:<email>               the user's id
//	account:<provider>:<account id>  Account (JSON)
//	vtoken:<hash>:<identifier>       VerificationToken (JSON)
//	session:<id>                     Session (JSON)
//	user_sessions:<user id>          set of the user's session ids
//	revoked:<jti>                    "1"
//	hit:<key>                        the window's count
//	claim:<key>                      the claim's value
//
// It is also a Broadcaster, over the pub/sub channels events:<topic> (after
// the prefix, unescaped).
type Redis struct {
	c      *redis.Client
	prefix string
}

// NewRedis connects to the server at url (redis://[user:password@]host[:port][/db],
// rediss:// for TLS, or unix:///path) and checks that it answers. The first
// call sends go-redis's own log messages to Caddy's log.
func NewRedis(ctx context.Context, rawURL string, opts RedisOptions) (*Redis, error) {
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("parsing the redis URL: %v", err)
	}
	if opts.TLS != nil {
		o.TLSConfig = opts.TLS.Clone()
		if o.TLSConfig.ServerName == "" {
			if host, _, err := net.SplitHostPort(o.Addr); err == nil {
				o.TLSConfig.ServerName = host
			}
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	c := redis.NewClient(o)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %v", o.Addr, err)
	}
	return &Redis{c: c, prefix: opts.Prefix}, nil
}

// redisLogger sends go-redis's own messages (reconnects, pool errors) to
// Caddy's log instead of standard error. It asks for Caddy's logger on each
// message: the logger of the config that opened the first Redis store may be
// gone after a reload.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("authgate.redis").Warn(fmt.Sprintf(format, v...))
}

// redisLogOnce sets the logger once per process: go-redis has one.
var redisLogOnce sync.Once

// Client is the connection, for what the Store interface does not cover.
func (r *Redis) Client() *redis.Client { return r.c }

// Close closes the connection.
func (r *Redis) Close() error { return r.c.Close() }

// keyPart escapes what would make a compound key ambiguous.
var keyPart = strings.NewReplacer("%", "%25", ":", "%3A").Replace

func (r *Redis) key(kind string, parts ...string) string {
	var b strings.Builder
	b.WriteString(r.prefix)
	b.WriteString(kind)
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(keyPart(p))
	}
	return b.String()
}

func (r *Redis) userKey(id string) string         { return r.key("user", id) }
func (r *Redis) emailKey(email string) string     { return r.key("user_email", email) }
func (r *Redis) sessionKey(id string) string      { return r.key("session", id) }
func (r *Redis) userSessionsKey(id string) string { return r.key("user_sessions", id) }

// ttl is how long a record expiring at t has left, rounded up to whole
// milliseconds (Redis's resolution); 0 when it has expired.
func ttl(t time.Time) time.Duration {
	d := time.Until(t)
	if d <= 0 {
		return 0
	}
	return d.Truncate(time.Millisecond) + time.Millisecond
}

// getJSON decodes the value at key into v; ErrNotFound when it is missing.
func getJSON(ctx context.Context, c redis.Cmdable, key string, v any) error {
	js, err := c.Get(ctx, key).Bytes()
	if err != nil {
		return notFound(err)
	}
	return json.Unmarshal(js, v)
}

func notFound(err error) error {
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	return err
}

// txMaxTries bounds the retries of an optimistic transaction whose watched
// keys changed under it.
const txMaxTries = 10

// watch runs fn in an optimistic transaction over keys, retrying when another
// client changed them first.
func (r *Redis) watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	for range txMaxTries {
		err := r.c.Watch(ctx, fn, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("store: too much contention on %s", keys[0])
}

func (r *Redis) CreateUser(ctx context.Context, u User) (User, error) {
	u = newUser(u, time.Now())
	js, err := json.Marshal(u)
	if err != nil {
		return User{}, err
	}
	keys := []string{r.userKey(u.ID)}
	if u.Email != "" {
		keys = append(keys, r.emailKey(u.Email))
	}
	err = r.watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, keys...).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrConflict
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, keys[0], js, 0)
			if u.Email != "" {
				p.Set(ctx, keys[1], u.ID, 0)
			}
			return nil
		})
		return err
	}, keys...)
	if err != nil {
		return User{}, err
	}
	return u, nil
}

func (r *Redis) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	err := getJSON(ctx, r.c, r.userKey(id), &u)
	return u, err
}

func (r *Redis) GetUserByEmail(ctx context.Context, email string) (User, error) {
	id, err := r.c.Get(ctx, r.emailKey(lowerEmail(email))).Result()
	if err != nil {
		return User{}, notFound(err)
	}
	return r.GetUser(ctx, id)
}

func (r *Redis) UpdateUser(ctx context.Context, u User) error {
	uk := r.userKey(u.ID)
	newEmail := lowerEmail(u.Email)
	keys := []string{uk}
	if newEmail != "" {
		keys = append(keys, r.emailKey(newEmail))
	}
	return r.watch(ctx, func(tx *redis.Tx) error {
		var stored User
		if err := getJSON(ctx, tx, uk, &stored); err != nil {
			return err
		}
		nu := updatedUser(u, stored)
		js, err := json.Marshal(nu)
		if err != nil {
			return err
		}
		moved := nu.Email != stored.Email
		if moved && nu.Email != "" {
			owner, err := tx.Get(ctx, r.emailKey(nu.Email)).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if err == nil && owner != nu.ID {
				return ErrConflict
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, uk, js, 0)
			if moved && stored.Email != "" {
				p.Del(ctx, r.emailKey(stored.Email))
			}
			if moved && nu.Email != "" {
				p.Set(ctx, r.emailKey(nu.Email), nu.ID, 0)
			}
			return nil
		})
		return err
	}, keys...)
}

// DeleteUser implements UserDeleter.
func (r *Redis) DeleteUser(ctx context.Context, id string) error {
	uk := r.userKey(id)
	return r.watch(ctx, func(tx *redis.Tx) error {
		var u User
		if err := getJSON(ctx, tx, uk, &u); err != nil {
			return ignoreNotFound(err)
		}
		var owner string
		if u.Email != "" {
			if err := tx.Watch(ctx, r.emailKey(u.Email)).Err(); err != nil {
				return err
			}
			var err error
			if owner, err = tx.Get(ctx, r.emailKey(u.Email)).Result(); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, uk)
			if owner == id {
				p.Del(ctx, r.emailKey(u.Email))
			}
			return nil
		})
		return err
	}, uk)
}

func (r *Redis) LinkAccount(ctx context.Context, a Account) error {
	if err := checkAccount(a); err != nil {
		return err
	}
	js, err := json.Marshal(a)
	if err != nil {
		return err
	}
	ok, err := r.c.SetNX(ctx, r.key("account", a.Provider, a.ProviderAccountID), js, 0).Result()
	if err != nil {
		return err
	}
	if !ok {
		return ErrConflict
	}
	return nil
}

func (r *Redis) GetUserByAccount(ctx context.Context, provider, providerAccountID string) (User, error) {
	var a Account
	if err := getJSON(ctx, r.c, r.key("account", provider, providerAccountID), &a); err != nil {
		return User{}, err
	}
	return r.GetUser(ctx, a.UserID)
}

func (r *Redis) CreateVerificationToken(ctx context.Context, t VerificationToken) error {
	t, err := checkToken(t)
	if err != nil {
		return err
	}
	d := ttl(t.Expires)
	if d == 0 {
		return nil // expired: nobody could use it
	}
	js, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return r.c.Set(ctx, r.key("vtoken", t.TokenHash, t.Identifier), js, d).Err()
}

func (r *Redis) UseVerificationToken(ctx context.Context, identifier, tokenHash string) (VerificationToken, error) {
	js, err := r.c.GetDel(ctx, r.key("vtoken", tokenHash, identifier)).Bytes()
	if err != nil {
		return VerificationToken{}, notFound(err)
	}
	var t VerificationToken
	if err := json.Unmarshal(js, &t); err != nil {
		return VerificationToken{}, err
	}
	if !live(t.Expires, time.Now()) {
		return VerificationToken{}, ErrNotFound
	}
	return t, nil
}

// putSessionScript sets KEYS[1] (the session) to ARGV[1] for ARGV[2] ms with the
// SET condition ARGV[4] (NX to create, XX to update), adds ARGV[3] (its id) to
// the set KEYS[2] and makes the set live at least as long. It returns 0 when
// the condition failed.
var putSessionScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], ARGV[4], 'PX', ARGV[2]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
`)

func (r *Redis) putSession(ctx context.Context, s Session, mode string) error {
	d := ttl(s.Expires)
	if d == 0 {
		if mode == "XX" {
			return r.DeleteSession(ctx, s.ID)
		}
		return nil // expired: it could never be read
	}
	js, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ok, err := putSessionScript.Run(ctx, r.c, []string{r.sessionKey(s.ID), r.userSessionsKey(s.UserID)},
		js, d.Milliseconds(), s.ID, mode).Int()
	if err != nil {
		return err
	}
	if ok == 0 {
		if mode == "NX" {
			return ErrConflict
		}
		return ErrNotFound
	}
	return nil
}

func (r *Redis) CreateSession(ctx context.Context, s Session) error {
	s, err := checkSession(s)
	if err != nil {
		return err
	}
	return r.putSession(ctx, s, "NX")
}

func (r *Redis) GetSession(ctx context.Context, id string) (Session, error) {
	var s Session
	err := getJSON(ctx, r.c, r.sessionKey(id), &s)
	if err == nil && !live(s.Expires, time.Now()) {
		err = ErrNotFound
	}
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

func (r *Redis) UpdateSession(ctx context.Context, s Session) error {
	stored, err := r.GetSession(ctx, s.ID)
	if err != nil {
		return err
	}
	s.UserID = stored.UserID
	s.Expires = utc(s.Expires)
	return r.putSession(ctx, s, "XX")
}

func (r *Redis) DeleteSession(ctx context.Context, id string) error {
	js, err := r.c.GetDel(ctx, r.sessionKey(id)).Bytes()
	if err != nil {
		return ignoreNotFound(notFound(err))
	}
	var s Session
	if err := json.Unmarshal(js, &s); err != nil {
		return err
	}
	return r.c.SRem(ctx, r.userSessionsKey(s.UserID), id).Err()
}

func (r *Redis) UserSessions(ctx context.Context, userID string) ([]Session, error) {
	sk := r.userSessionsKey(userID)
	ids, err := r.c.SMembers(ctx, sk).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.sessionKey(id)
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Session
	var gone []any
	for i, v := range vals {
		js, ok := v.(string)
		if !ok {
			gone = append(gone, ids[i])
			continue
		}
		var s Session
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			return nil, err
		}
		if live(s.Expires, now) {
			out = append(out, s)
		}
	}
	if len(gone) > 0 {
		// The set outlives its members; forget the expired ones.
		if err := r.c.SRem(ctx, sk, gone...).Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *Redis) Revoke(ctx context.Context, jti string, until time.Time) error {
	d := ttl(until)
	if d == 0 {
		return nil
	}
	return r.c.Set(ctx, r.key("revoked", jti), "1", d).Err()
}

// eventsChannel is the pub/sub channel of a Broadcaster topic.
func (r *Redis) eventsChannel(topic string) string { return r.prefix + "events:" + topic }

// Publish implements Broadcaster: PUBLISH on the topic's channel.
func (r *Redis) Publish(ctx context.Context, topic, msg string) error {
	return r.c.Publish(ctx, r.eventsChannel(topic), msg).Err()
}

// Subscribe implements Broadcaster with a connection of its own, which it
// closes when ctx ends (or the store is closed). While nothing arrives it
// PINGs the server, and replaces a connection that answers nothing (a peer
// gone without a word) as if it had been lost. See redis_pubsub.go.
func (r *Redis) Subscribe(ctx context.Context, topic string, onMessage func(msg string), onResync func()) error {
	_, err := r.subscribe(ctx, topic, onMessage, onResync)
	return err
}

// noExpiry is the until Revocations gives a revoked key without a time to
// live (Revoke never writes one: it would be revoked forever).
var noExpiry = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// unescapeKeyPart reverses keyPart.
var unescapeKeyPart = strings.NewReplacer("%3A", ":", "%25", "%").Replace

// globEscape escapes what a SCAN MATCH pattern would take for a wildcard.
var globEscape = strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace

// Revocations implements RevocationLister: it SCANs the revoked:* keys and
// reads their remaining time to live.
func (r *Redis) Revocations(ctx context.Context) (map[string]time.Time, error) {
	kp := r.key("revoked") + ":"
	var keys []string
	iter := r.c.Scan(ctx, 0, globEscape(kp)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(keys))
	for chunk := range slices.Chunk(keys, 1000) {
		cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range chunk {
				p.PTTL(ctx, k)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		// Now is taken after the replies, so that until errs late, not early.
		now := time.Now()
		for i, cmd := range cmds {
			d, err := cmd.(*redis.DurationCmd).Result()
			if err != nil {
				return nil, err
			}
			jti := unescapeKeyPart(strings.TrimPrefix(chunk[i], kp))
			switch {
			case d > 0:
				out[jti] = now.Add(d)
			case d == -1: // no expiry
				out[jti] = noExpiry
			} // -2: expired since the SCAN
		}
	}
	return out, nil
}

// hitScript increments KEYS[1] and, when it has no expiry (the window's first hit),
// makes it expire in ARGV[1] ms.
var hitScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

func (r *Redis) Hit(ctx context.Context, key string, window time.Duration) (int, error) {
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	ms := max(window.Milliseconds(), 1)
	return hitScript.Run(ctx, r.c, []string{r.key("hit", key)}, strconv.FormatInt(ms, 10)).Int()
}

// Claim is SET NX PX (Redis's resolution is a millisecond).
func (r *Redis) Claim(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	ok, err := r.c.SetNX(ctx, r.key("claim", key), value, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return err
	}
	if !ok {
		return ErrConflict
	}
	return nil
}

// SetClaim is SET PX.
func (r *Redis) SetClaim(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return r.c.Set(ctx, r.key("claim", key), value, max(ttl, time.Millisecond)).Err()
}

func (r *Redis) GetClaim(ctx context.Context, key string) (string, error) {
	v, err := r.c.Get(ctx, r.key("claim", key)).Result()
	if err != nil {
		return "", notFound(err)
	}
	return v, nil
}

var (
	_ Store       = (*Redis)(nil)
	_ UserDeleter = (*Redis)(nil)
)
