package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	// defaults to the URL's host, for every node of a cluster too (as
	// go-redis's cluster URL does).
	TLS *tls.Config
}

// Redis is a Store in a Redis server (6.2 or later, for GETDEL) or a Redis
// Cluster, shared by every instance that uses the same server and prefix.
// Users and accounts are kept until deleted; every other key expires with its
// record.
//
// Keys, after the prefix (parts that may contain ':' are escaped):
//
//	user:<id>                        User (JSON)
//	user_email:<email>               the id of the user with this address
//	account:<provider>:<account id>  Account (JSON)
//	vtoken:<hash>:<identifier>       VerificationToken (JSON)
//	session:<id>                     Session (JSON)
//	user_sessions:<user id>          set of the user's session ids
//	revoked:<jti>                    "1"
//	hit:<key>                        the window's count
//	claim:<key>                      the claim's value
//
// Every command, script and transaction touches one key, so that each works
// on a Redis Cluster, where keys of different hash slots live on different
// masters and no command may span slots. Hash tags could put a few keys in
// one slot, but not these: each is found by its own id (a user by id, its
// address by the address, a session by the cookie's id), and the keys that
// change together belong to different ids. So where two keys must agree —
// an address and the user who has it, a session and its user's set — they
// are written in an order that leaves a crash between the two writes
// harmless (see claimEmail and putSession), and the one scan there is, of
// the revocations, runs on every master.
//
// It is also a Broadcaster, over the pub/sub channels events:<topic> (after
// the prefix, unescaped).
type Redis struct {
	c      redis.UniversalClient // a *redis.Client or a *redis.ClusterClient
	prefix string
}

// NewRedis connects to the server at url and checks that it answers:
// redis://[user:password@]host[:port][/db], rediss:// for TLS, or
// unix:///path. A URL with addr= query parameters is go-redis's cluster URL
// (redis://[user:password@]host:port?addr=host2:port2&addr=…): the nodes of
// a Redis Cluster, any of which tell the client about the others. The first
// call sends go-redis's own log messages to Caddy's log.
func NewRedis(ctx context.Context, rawURL string, opts RedisOptions) (*Redis, error) {
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
	c, addr, err := newRedisClient(rawURL, opts.TLS)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %v", addr, err)
	}
	return &Redis{c: c, prefix: opts.Prefix}, nil
}

// IsRedisClusterURL reports whether rawURL names a Redis Cluster: it has
// addr= query parameters, which list further nodes in go-redis's cluster
// URL. Any other URL names one server.
func IsRedisClusterURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Query().Has("addr")
}

// newRedisClient makes the client a URL asks for, and says where it goes
// (for errors).
func newRedisClient(rawURL string, tlsConf *tls.Config) (redis.UniversalClient, string, error) {
	if IsRedisClusterURL(rawURL) {
		o, err := redis.ParseClusterURL(rawURL)
		if err == nil {
			err = checkClusterPath(rawURL)
		}
		if err != nil {
			return nil, "", fmt.Errorf("parsing the redis cluster URL: %v", urlError(err))
		}
		o.TLSConfig = withTLS(o.TLSConfig, tlsConf, o.Addrs[0])
		c := redis.NewClusterClient(o)
		c.AddHook(unreachableHook{c})
		// Before the first command: the nodes' clients are made as needed.
		c.OnNewNode(func(node *redis.Client) { node.AddHook(nodeDialHook{c}) })
		return c, strings.Join(o.Addrs, ","), nil
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("parsing the redis URL: %v", urlError(err))
	}
	o.TLSConfig = withTLS(o.TLSConfig, tlsConf, o.Addr)
	c := redis.NewClient(o)
	c.AddHook(unreachableHook{})
	return c, o.Addr, nil
}

// urlError is err without the URL that url.Parse's errors quote, password
// and all.
func urlError(err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkClusterPath refuses a database number in a cluster URL, which
// go-redis would ignore: a Redis Cluster has database 0 only.
func checkClusterPath(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return fmt.Errorf("a Redis Cluster has database 0 only, not %q", p)
	}
	return nil
}

// withTLS is the TLS configuration of a connection to addr: the URL's
// (rediss://), unless conf replaces it; its ServerName defaults to addr's host.
func withTLS(fromURL, conf *tls.Config, addr string) *tls.Config {
	if conf == nil {
		return fromURL
	}
	c := conf.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}

// ErrUnavailable is what the errors of a store that cannot be reached are
// (errors.Is): a Redis server that is down or does not answer, a cluster
// whose master of a key's slot is down or that has no quorum. The same call
// may succeed in a moment, so it is worth a 503 and Retry-After, not an
// error page. Only Redis returns it.
var ErrUnavailable = errors.New("store: unavailable")

// unavailableError is an error of go-redis that means ErrUnavailable; its
// text is go-redis's.
type unavailableError struct{ err error }

func (e unavailableError) Error() string        { return e.err.Error() }
func (e unavailableError) Unwrap() error        { return e.err }
func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }

// unreachable tells the errors that ErrUnavailable covers: the server could
// not be reached or did not answer (in time), or it answered that the
// cluster is down or changing. Other answers (a missing key, a script the
// server does not know yet) are answers.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) || errors.Is(err, context.Canceled) {
		return false
	}
	var reply redis.Error
	if !errors.As(err, &reply) {
		return true
	}
	msg := reply.Error()
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "LOADING"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// unreachableHook is the hook of a store's client (the client of one server,
// or a cluster's, which retries on other nodes first). It makes the errors of
// an unreachable store ErrUnavailable, and a cluster client read the
// cluster's layout (which master serves which slots) again after one:
// go-redis re-reads it on its own only when a node answers MOVED or ASK, and
// once a minute, so without it the slots of a master that died would still
// be sent to it for up to a minute after its replica took them over.
// ReloadState reloads in the background, at most once per 200 ms however
// many commands fail.
type unreachableHook struct{ cluster *redis.ClusterClient } // nil: one server

func (h unreachableHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h unreachableHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.check(ctx, cmd, next(ctx, cmd))
	}
}

func (h unreachableHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.check(ctx, cmd, cmd.Err())
		}
		if unreachable(err) {
			err = unavailableError{err}
		}
		return err
	}
}

// check returns err, as ErrUnavailable when it is one, also in cmd.
func (h unreachableHook) check(ctx context.Context, cmd redis.Cmder, err error) error {
	if !unreachable(err) {
		return err
	}
	if h.cluster != nil {
		h.cluster.ReloadState(ctx)
	}
	err = unavailableError{err}
	cmd.SetErr(err)
	return err
}

// nodeDialHook is the hook of a cluster node's client: a node that cannot be
// dialled may have been replaced, and reading the layout again at once lets
// the command's next attempt (go-redis retries a few times, 8 to 512 ms
// apart) go to the replica that took over. It changes no error: go-redis's
// retries tell errors apart.
type nodeDialHook struct{ cluster *redis.ClusterClient }

func (h nodeDialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.cluster.ReloadState(ctx)
		}
		return conn, err
	}
}

func (h nodeDialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h nodeDialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// reloadLayout asks a cluster client to read the cluster's layout again
// (see unreachableHook), for what goes around the hooks: pub/sub.
func (r *Redis) reloadLayout(ctx context.Context) {
	if c, ok := r.c.(*redis.ClusterClient); ok {
		c.ReloadState(ctx)
	}
}

// forEachMaster calls fn with a client of every master, at once: the one
// server's, or every master's of a cluster. A node's SCAN sees the keys of
// that node only.
func (r *Redis) forEachMaster(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return fmt.Errorf("store: unexpected redis client %T", r.c)
	}
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

// Client is the connection, for what the Store interface does not cover: a
// *redis.Client, or a *redis.ClusterClient for a cluster URL.
func (r *Redis) Client() redis.UniversalClient { return r.c }

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

// txMaxTries bounds the retries of an optimistic update of a record that
// changed under it.
const txMaxTries = 10

func errContention(key string) error { return fmt.Errorf("store: too much contention on %s", key) }

// errChanged means a record changed between its read and its write.
var errChanged = errors.New("store: the record changed meanwhile")

// swapScript sets KEYS[1] to ARGV[2] (for ARGV[3] ms, or for good when it is
// 0; an empty ARGV[2] deletes the key) when the key holds ARGV[1], and
// returns whether it did.
var swapScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
elseif ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
`)

// swap is swapScript: key becomes value (deleted when "", for ttl or for good
// when 0) when it holds old.
func (r *Redis) swap(ctx context.Context, key, old, value string, ttl time.Duration) (bool, error) {
	n, err := swapScript.Run(ctx, r.c, []string{key}, old, value, ttl.Milliseconds()).Int()
	return n == 1, err
}

// persistScript makes KEYS[1] permanent when it exists and holds ARGV[1]
// (any value when ARGV[1] is empty), and returns whether it does.
var persistScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or (ARGV[1] ~= '' and v ~= ARGV[1]) then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
`)

func (r *Redis) persist(ctx context.Context, key, value string) (bool, error) {
	n, err := persistScript.Run(ctx, r.c, []string{key}, value).Int()
	return n == 1, err
}

// pendingTTL is how long a user being created, and the claim of its address,
// live until both are written: a sign-in that dies half way leaves nothing
// that lasts. It is far longer than the few round trips the creation takes,
// a failover included.
const pendingTTL = 30 * time.Second

// claimEmail makes the address key of email (lowercase) name user id, for ttl
// (a pending claim) or for good (0). The key is the authority on who has an
// address: it is claimed before the user record names the address and
// released after the record stopped naming it, so a crash in between leaves a
// key naming a user without the address, never a user whose address another
// could claim. claimEmail takes such a key over: a permanent key whose user
// is gone or has another address. A pending key is never taken over: its
// user is being created and is written before the key is made permanent.
// ErrConflict when another user has the address or is being created with it.
func (r *Redis) claimEmail(ctx context.Context, email, id string, ttl time.Duration) error {
	k := r.emailKey(email)
	ok, err := r.c.SetNX(ctx, k, id, ttl).Result()
	if err != nil || ok {
		return err
	}
	owner, err := r.c.Get(ctx, k).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ErrConflict // released meanwhile: the caller starts over
	case err != nil:
		return err
	case owner == id:
		return nil
	}
	if stale, err := r.staleEmail(ctx, k, email, owner); err != nil || !stale {
		if err == nil {
			err = ErrConflict
		}
		return err
	}
	if ok, err = r.swap(ctx, k, owner, id, ttl); err == nil && !ok {
		err = ErrConflict
	}
	return err
}

// staleEmail reports whether the permanent address key k of email names a
// user, owner, who is gone or has another address.
func (r *Redis) staleEmail(ctx context.Context, k, email, owner string) (bool, error) {
	d, err := r.c.PTTL(ctx, k).Result()
	if err != nil || d != -1 { // -1: no expiry
		return false, err
	}
	u, err := r.GetUser(ctx, owner)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	return err == nil && u.Email != email, err
}

// releaseEmail deletes the address key of email when it names user id.
func (r *Redis) releaseEmail(ctx context.Context, email, id string) error {
	_, err := r.swap(ctx, r.emailKey(email), id, "", 0)
	return err
}

func (r *Redis) CreateUser(ctx context.Context, u User) (User, error) {
	u = newUser(u, time.Now())
	js, err := json.Marshal(u)
	if err != nil {
		return User{}, err
	}
	if err := r.createUser(ctx, u, string(js)); err != nil {
		return User{}, err
	}
	return u, nil
}

// createUser stores u, as js. With an address: the pending claim of the
// address, the pending record, the address made permanent, the record made
// permanent. Up to the third step a crash leaves what expires; after it, an
// address key that the next claim takes over once the record expired.
func (r *Redis) createUser(ctx context.Context, u User, js string) error {
	uk := r.userKey(u.ID)
	if u.Email == "" {
		ok, err := r.c.SetNX(ctx, uk, js, 0).Result()
		if err == nil && !ok {
			err = ErrConflict
		}
		return err
	}
	if err := r.claimEmail(ctx, u.Email, u.ID, pendingTTL); err != nil {
		return err
	}
	ok, err := r.c.SetNX(ctx, uk, js, pendingTTL).Result()
	if err != nil || !ok {
		_ = r.releaseEmail(ctx, u.Email, u.ID) // else it expires
		if err == nil {
			err = ErrConflict
		}
		return err
	}
	if ok, err := r.persist(ctx, r.emailKey(u.Email), u.ID); err != nil || !ok {
		// The claim expired before this (and may be another's now).
		_, _ = r.swap(ctx, uk, js, "", 0)
		if err == nil {
			err = ErrConflict
		}
		return err
	}
	// Any value: a sign-in that found the user by its pending address may
	// have updated the record (which makes it permanent) meanwhile.
	if ok, err := r.persist(ctx, uk, ""); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("store: creating user %s took longer than %v", u.ID, pendingTTL)
		}
		return err
	}
	return nil
}

func (r *Redis) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	err := getJSON(ctx, r.c, r.userKey(id), &u)
	return u, err
}

func (r *Redis) GetUserByEmail(ctx context.Context, email string) (User, error) {
	email = lowerEmail(email)
	id, err := r.c.Get(ctx, r.emailKey(email)).Result()
	if err != nil {
		return User{}, notFound(err)
	}
	u, err := r.GetUser(ctx, id)
	if err == nil && u.Email != email {
		err = ErrNotFound // a key that outlived its user's address: see claimEmail
	}
	if err != nil {
		return User{}, err
	}
	return u, nil
}

func (r *Redis) UpdateUser(ctx context.Context, u User) error {
	uk := r.userKey(u.ID)
	for range txMaxTries {
		old, err := r.c.Get(ctx, uk).Result()
		if err != nil {
			return notFound(err)
		}
		var stored User
		if err := json.Unmarshal([]byte(old), &stored); err != nil {
			return err
		}
		nu := updatedUser(u, stored)
		js, err := json.Marshal(nu)
		if err != nil {
			return err
		}
		err = r.replaceUser(ctx, nu.ID, old, string(js), stored.Email, nu.Email)
		if !errors.Is(err, errChanged) {
			return err
		}
	}
	return errContention(uk)
}

// replaceUser replaces the record of user id, which held old, with js, and
// moves its address from oldEmail to newEmail: the new address is claimed
// before the record names it, the old one released after (see claimEmail).
// errChanged when the record no longer held old.
func (r *Redis) replaceUser(ctx context.Context, id, old, js, oldEmail, newEmail string) error {
	uk := r.userKey(id)
	moved := newEmail != oldEmail
	if moved && newEmail != "" {
		if err := r.claimEmail(ctx, newEmail, id, 0); err != nil {
			return err
		}
	}
	ok, err := r.swap(ctx, uk, old, js, 0)
	if err != nil || !ok {
		if moved && newEmail != "" {
			_ = r.releaseEmail(ctx, newEmail, id)
		}
		if err == nil {
			err = errChanged
		}
		return err
	}
	if !moved {
		return nil
	}
	if newEmail != "" {
		// Until the record named the address, the claim looked like one a
		// crash left behind, and another user's claim may have taken it
		// over: then the address is that user's, and this update is undone.
		owner, err := r.c.Get(ctx, r.emailKey(newEmail)).Result()
		if err != nil || owner != id {
			_, _ = r.swap(ctx, uk, js, old, 0)
			if err == nil || errors.Is(err, redis.Nil) {
				err = ErrConflict
			}
			return err
		}
	}
	if oldEmail != "" {
		return r.releaseEmail(ctx, oldEmail, id)
	}
	return nil
}

// DeleteUser implements UserDeleter.
func (r *Redis) DeleteUser(ctx context.Context, id string) error {
	uk := r.userKey(id)
	for range txMaxTries {
		old, err := r.c.Get(ctx, uk).Result()
		if err != nil {
			return ignoreNotFound(notFound(err))
		}
		var u User
		if err := json.Unmarshal([]byte(old), &u); err != nil {
			return err
		}
		ok, err := r.swap(ctx, uk, old, "", 0)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if u.Email != "" {
			return r.releaseEmail(ctx, u.Email, id) // after the record: see claimEmail
		}
		return nil
	}
	return errContention(uk)
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

// indexSessionScript adds ARGV[1] (a session's id) to the set KEYS[1] (its
// user's sessions) and makes the set live at least ARGV[2] ms.
var indexSessionScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// putSession writes the session with the SET condition mode (NX to create, XX
// to update), then lists it in its user's set. The two keys are in different
// hash slots, hence this order: an id in the set whose session is gone is one
// that ended, which UserSessions forgets, whereas a session missing from the
// set would escape its user's list (and an administrator's sign-out of all
// of them).
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
	sk := r.sessionKey(s.ID)
	err = r.c.SetArgs(ctx, sk, js, redis.SetArgs{Mode: mode, TTL: d}).Err()
	switch {
	case errors.Is(err, redis.Nil) && mode == "NX":
		return ErrConflict
	case errors.Is(err, redis.Nil):
		return ErrNotFound
	case err != nil:
		return err
	}
	err = indexSessionScript.Run(ctx, r.c, []string{r.userSessionsKey(s.UserID)}, s.ID, d.Milliseconds()).Err()
	if err != nil && mode == "NX" {
		_ = r.c.Del(ctx, sk).Err() // not listed, it must not start
	}
	return err
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
	// A GET each, not an MGET: the sessions are in different hash slots.
	cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Get(ctx, r.sessionKey(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	now := time.Now()
	var out []Session
	var gone []any
	for i, cmd := range cmds {
		js, err := cmd.(*redis.StringCmd).Bytes()
		if errors.Is(err, redis.Nil) {
			gone = append(gone, ids[i])
			continue
		}
		if err != nil {
			return nil, err
		}
		var s Session
		if err := json.Unmarshal(js, &s); err != nil {
			return nil, err
		}
		switch {
		case s.UserID != userID:
			gone = append(gone, ids[i]) // the id of an ended session, used again
		case live(s.Expires, now):
			out = append(out, s)
		}
	}
	if len(gone) > 0 {
		// The set outlives its members; forget the ended ones.
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
//
// On a Redis Cluster too: a PUBLISH on any node reaches the subscribers of
// every node over the cluster bus. Sharded pub/sub (SPUBLISH, Redis 7) would
// keep each message within the shard of the channel's slot, which pays off
// for channels that carry much traffic; this one carries a message per
// sign-out, and PUBLISH keeps the one code path of a single server (Redis 6.2
// included), is answered by any live node, even one that thinks the cluster
// down (it has no key), and leaves the subscriber free to be on any node.
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

// Revocations implements RevocationLister: it SCANs the revoked:* keys of
// every master and reads their remaining time to live.
func (r *Redis) Revocations(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	var mu sync.Mutex
	err := r.forEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		m, err := r.revocationsOn(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		maps.Copy(out, m)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// revocationsOn is Revocations on one server.
func (r *Redis) revocationsOn(ctx context.Context, c *redis.Client) (map[string]time.Time, error) {
	kp := r.key("revoked") + ":"
	var keys []string
	iter := c.Scan(ctx, 0, globEscape(kp)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(keys))
	for chunk := range slices.Chunk(keys, 1000) {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
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
