package providers

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ErrCredentials is returned for a wrong username or password; it says no more,
// so callers cannot tell which one was wrong.
var ErrCredentials = errors.New("invalid username or password")

// Credentials signs in users with a username and password: listed in a users
// file, or checked by an authorize endpoint.
type Credentials struct {
	id, name string
	// endpoint, when set, checks the credentials instead of the users file.
	endpoint *authorizeEndpoint
	users    map[string]localUser
	// dummyHash is compared against when the username is unknown: the costliest
	// hash in the file, so that an unknown user takes as long as a wrong password
	// (a fixed-cost hash would answer faster than `caddy hash-password`'s cost 14
	// and tell which usernames exist).
	dummyHash []byte
}

type localUser struct {
	hash        []byte
	name, email string
}

func newCredentials(cfg Config, client *http.Client) (*Credentials, error) {
	if cfg.AuthorizeURL != "" {
		if cfg.UsersFile != "" {
			return nil, fmt.Errorf("provider %q: use users_file or authorize_url, not both", cfg.ID)
		}
		ep, err := newAuthorizeEndpoint(cfg, client)
		if err != nil {
			return nil, err
		}
		return &Credentials{id: cfg.ID, name: displayName(cfg, "Credentials"), endpoint: ep}, nil
	}
	if cfg.UsersFile == "" {
		return nil, fmt.Errorf("provider %q: missing users_file (or authorize_url)", cfg.ID)
	}
	users, err := loadUsers(cfg.UsersFile)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %v", cfg.ID, err)
	}
	c := &Credentials{id: cfg.ID, name: displayName(cfg, "Credentials"), users: users}
	maxCost := -1
	for _, u := range users {
		if cost, _ := bcrypt.Cost(u.hash); cost > maxCost {
			maxCost, c.dummyHash = cost, u.hash
		}
	}
	return c, nil
}

func (c *Credentials) ID() string   { return c.id }
func (c *Credentials) Name() string { return c.name }
func (c *Credentials) Type() string { return TypeCredentials }

// AuthorizeFields checks the submitted sign-in fields (username, password and any
// other field of the form) and returns the user (id, name, email, image).
// ErrCredentials means the credentials were refused; any other error means they
// could not be checked.
func (c *Credentials) AuthorizeFields(ctx context.Context, fields map[string]string) (map[string]any, error) {
	if c.endpoint != nil {
		return c.endpoint.authorize(ctx, fields)
	}
	return c.Authorize(fields["username"], fields["password"])
}

// Authorize checks username and password against the users file and returns the
// user (id, name, email).
func (c *Credentials) Authorize(username, password string) (map[string]any, error) {
	if c.users == nil {
		return nil, ErrCredentials
	}
	u, known := c.users[username]
	hash := u.hash
	if !known {
		hash = c.dummyHash
	}
	// bcrypt compares in constant time; the unknown-user path pays the same cost.
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !known {
		return nil, ErrCredentials
	}
	return map[string]any{"id": username, "name": firstNonEmpty(u.name, username), "email": u.email}, nil
}

// loadUsers reads `username:bcrypt-hash[:name[:email]]` lines; blank lines and
// lines starting with # are ignored. The hash may be base64-encoded, as older
// `caddy hash-password` versions printed it.
func loadUsers(path string) (map[string]localUser, error) {
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
	return users, nil
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
