package providers

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// ErrCredentials is returned for a wrong username or password; it says no more,
// so callers cannot tell which one was wrong.
var ErrCredentials = errors.New("invalid username or password")

// ErrBusy is returned when as many passwords as there are CPUs are being
// checked and none finished in a moment: the caller should ask the client to
// come back, not queue it.
var ErrBusy = errors.New("too many password checks at once")

// DefaultCredentialsID is the id of a credentials provider configured without
// one. Its users' sub is their id as the check returned it; other credentials
// providers' users are "<provider id>:<id>".
const DefaultCredentialsID = "credentials"

// defaultFailureWindow is how long failed sign-ins count when failure_window is unset.
const defaultFailureWindow = 15 * time.Minute

// Credentials signs in users with a username and password: listed in a users
// file, or checked by an authorize endpoint.
type Credentials struct {
	id, name string
	// endpoint, when set, checks the credentials instead of the users file.
	endpoint      *authorizeEndpoint
	users         *liveUsers
	checks        *hashChecker
	failureWindow time.Duration
}

func newCredentials(cfg Config, client *http.Client, logger *zap.Logger) (*Credentials, error) {
	c := &Credentials{id: cfg.ID, name: displayName(cfg, "Credentials"), checks: passwordChecks, failureWindow: time.Duration(cfg.FailureWindow)}
	if c.failureWindow <= 0 {
		c.failureWindow = defaultFailureWindow
	}
	if cfg.AuthorizeURL != "" {
		if cfg.UsersFile != "" {
			return nil, fmt.Errorf("provider %q: use users_file or authorize_url, not both", cfg.ID)
		}
		ep, err := newAuthorizeEndpoint(cfg, client)
		if err != nil {
			return nil, err
		}
		c.endpoint = ep
		return c, nil
	}
	if cfg.UsersFile == "" {
		return nil, fmt.Errorf("provider %q: missing users_file (or authorize_url)", cfg.ID)
	}
	f, err := openUsersFile(cfg.UsersFile, logger.With(zap.String("provider", cfg.ID)))
	if err != nil {
		return nil, fmt.Errorf("provider %q: %v", cfg.ID, err)
	}
	c.users = f
	return c, nil
}

func (c *Credentials) ID() string   { return c.id }
func (c *Credentials) Name() string { return c.name }
func (c *Credentials) Type() string { return TypeCredentials }

// FailureWindow is how long failed sign-ins through this provider count
// towards its limits (failure_window).
func (c *Credentials) FailureWindow() time.Duration { return c.failureWindow }

// Subject is the sub of the user the check returned as id. Users of two
// credentials providers never share one: a provider's own id prefixes its
// users' ids, except for the default provider (id "credentials"), whose users
// keep the id as it is, as in Auth.js. Such an id that has a ':' is prefixed
// too, so that it cannot be another provider's prefixed one.
func (c *Credentials) Subject(id string) string {
	if c.id == DefaultCredentialsID && !strings.Contains(id, ":") {
		return id
	}
	return c.id + ":" + id
}

// SignIn checks the submitted sign-in fields (username, password and any other
// field of the form) and describes the user: user (id = Subject, name, email,
// image and what an authorize endpoint added) and account (provider_account_id
// = the id the check returned). ErrCredentials means the credentials were
// refused, ErrBusy that they could not be checked now; any other error means
// they could not be checked.
func (c *Credentials) SignIn(ctx context.Context, fields map[string]string) (*Identity, error) {
	user, err := c.AuthorizeFields(ctx, fields)
	if err != nil {
		return nil, err
	}
	accountID, _ := user["id"].(string)
	user["id"] = c.Subject(accountID)
	return &Identity{
		User:    user,
		Account: map[string]any{"provider": c.id, "type": TypeCredentials, "provider_account_id": accountID},
	}, nil
}

// AuthorizeFields checks the submitted sign-in fields and returns the user
// (id, name, email, image) as the users file or the authorize endpoint has it.
func (c *Credentials) AuthorizeFields(ctx context.Context, fields map[string]string) (map[string]any, error) {
	if c.endpoint != nil {
		return c.endpoint.authorize(ctx, fields)
	}
	return c.Authorize(ctx, fields["username"], fields["password"])
}

// Authorize checks username and password against the users file and returns the
// user (id, name, email).
func (c *Credentials) Authorize(ctx context.Context, username, password string) (map[string]any, error) {
	if c.users == nil {
		return nil, ErrCredentials
	}
	t := c.users.current()
	u, known := t.users[username]
	hash := u.hash
	if !known {
		hash = t.decoy(username)
	}
	// bcrypt compares in constant time; the unknown-user path pays a known user's cost.
	if err := c.checks.check(ctx, hash, []byte(password)); err != nil || !known {
		if errors.Is(err, ErrBusy) {
			return nil, err
		}
		return nil, ErrCredentials
	}
	return map[string]any{"id": username, "name": firstNonEmpty(u.name, username), "email": u.email}, nil
}

// passwordChecks bounds the bcrypt comparisons of the whole process: one
// takes a CPU for up to a second (`caddy hash-password`'s cost 14), so more
// at once than there are CPUs only queue, and every other request of the
// server slows down behind them.
var passwordChecks = newHashChecker(runtime.GOMAXPROCS(0), time.Second, bcrypt.CompareHashAndPassword)

// hashChecker runs password comparisons, at most len(slots) at once; one
// that finds no free slot within wait gives up with ErrBusy.
type hashChecker struct {
	slots   chan struct{}
	wait    time.Duration
	compare func(hash, password []byte) error
}

func newHashChecker(n int, wait time.Duration, compare func(hash, password []byte) error) *hashChecker {
	return &hashChecker{slots: make(chan struct{}, max(n, 1)), wait: wait, compare: compare}
}

func (h *hashChecker) check(ctx context.Context, hash, password []byte) error {
	select {
	case h.slots <- struct{}{}:
	default:
		timer := time.NewTimer(h.wait)
		defer timer.Stop()
		select {
		case h.slots <- struct{}{}:
		case <-timer.C:
			return ErrBusy
		case <-ctx.Done():
			return ErrBusy
		}
	}
	defer func() { <-h.slots }()
	return h.compare(hash, password)
}

// liveUsers are the users of a users file, read again when it changes: its
// modification time and size are looked at, at most once a second, when a
// user signs in.
type liveUsers struct {
	path   string
	logger *zap.Logger
	table  atomic.Pointer[userTable]
	// checked is when the file was last looked at (Unix nanoseconds).
	checked atomic.Int64

	mu      sync.Mutex // held by the one request that looks at the file
	modTime time.Time
	size    int64
}

// recheck is how often at most the users file is looked at.
const recheck = time.Second

func openUsersFile(path string, logger *zap.Logger) (*liveUsers, error) {
	f := &liveUsers{path: path, logger: logger}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("users_file: %v", err)
	}
	t, err := loadUsers(path)
	if err != nil {
		return nil, err
	}
	f.table.Store(t)
	f.modTime, f.size = fi.ModTime(), fi.Size()
	f.checked.Store(time.Now().UnixNano())
	return f, nil
}

// current is the users as the file lists them now, or as it last listed
// them when it cannot be read or is not valid (the error is logged once per
// change of the file).
func (f *liveUsers) current() *userTable {
	now := time.Now().UnixNano()
	if now-f.checked.Load() >= int64(recheck) && f.mu.TryLock() {
		f.checked.Store(now)
		f.reloadIfChanged()
		f.mu.Unlock()
	}
	return f.table.Load()
}

func (f *liveUsers) reloadIfChanged() {
	fi, err := os.Stat(f.path)
	if err != nil {
		if !f.modTime.IsZero() {
			f.logger.Error("users_file cannot be read; keeping the users it listed", zap.Error(err))
			f.modTime, f.size = time.Time{}, 0
		}
		return
	}
	if fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return
	}
	f.modTime, f.size = fi.ModTime(), fi.Size()
	t, err := loadUsers(f.path)
	if err != nil {
		f.logger.Error("users_file changed but is not valid; keeping the users it listed", zap.Error(err))
		return
	}
	f.table.Store(t)
	f.logger.Info("users_file reloaded", zap.String("path", f.path), zap.Int("users", len(t.users)))
}

// userTable is the users of a users file.
type userTable struct {
	users map[string]localUser
	// hashes are the users' hashes in username order; decoyKey keys the choice
	// of one for an unknown username (see decoy).
	hashes   [][]byte
	decoyKey []byte
}

type localUser struct {
	hash        []byte
	name, email string
}

func newUserTable(users map[string]localUser) *userTable {
	t := &userTable{users: users}
	names := slices.Sorted(maps.Keys(users))
	key := sha256.New()
	for _, n := range names {
		t.hashes = append(t.hashes, users[n].hash)
		key.Write(users[n].hash)
	}
	t.decoyKey = key.Sum(nil)
	return t
}

// decoy is the hash an unknown username is compared with: one of the file's,
// chosen by a keyed hash of the username. An unknown user then costs what a
// known one does, whatever the mix of costs in the file (each cost as often as
// the file has it), and the same at every try: timing a username again tells
// nothing either. The key is derived from the file's hashes, so every instance
// with the file chooses alike, and an attacker, who does not have them, cannot
// tell which hash a name gets.
func (t *userTable) decoy(username string) []byte {
	mac := hmac.New(sha256.New, t.decoyKey)
	mac.Write([]byte(username))
	n := binary.BigEndian.Uint64(mac.Sum(nil))
	return t.hashes[n%uint64(len(t.hashes))]
}

// loadUsers reads `username:bcrypt-hash[:name[:email]]` lines; blank lines and
// lines starting with # are ignored. The hash may be base64-encoded, as older
// `caddy hash-password` versions printed it.
func loadUsers(path string) (*userTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users_file: %v", err)
	}
	defer f.Close()
	users := map[string]localUser{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.SplitN(line, ":", 4)
		if len(fields) < 2 || fields[0] == "" {
			return nil, fmt.Errorf("users_file %s:%d: want username:bcrypt-hash[:name[:email]]", path, n)
		}
		hash, err := parseHash(fields[1])
		if err != nil {
			return nil, fmt.Errorf("users_file %s:%d: %v", path, n, err)
		}
		if _, dup := users[fields[0]]; dup {
			return nil, fmt.Errorf("users_file %s:%d: duplicate user %q", path, n, fields[0])
		}
		u := localUser{hash: hash}
		if len(fields) > 2 {
			u.name = fields[2]
		}
		if len(fields) > 3 {
			u.email = fields[3]
		}
		users[fields[0]] = u
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users_file: %v", err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("users_file %s: no users", path)
	}
	return newUserTable(users), nil
}

func parseHash(s string) ([]byte, error) {
	h := []byte(s)
	if !strings.HasPrefix(s, "$2") {
		dec, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errors.New("password hash is neither bcrypt nor base64-encoded bcrypt")
		}
		h = dec
	}
	if _, err := bcrypt.Cost(h); err != nil {
		return nil, fmt.Errorf("password hash: %v", err)
	}
	return h, nil
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
