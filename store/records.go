package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// UserDeleter is implemented by stores that can delete a user; every store in
// this package does. It is separate from Store so that adding it broke no
// existing implementation: ResolveUser uses it, when present, to remove a user
// it created but lost the race to link.
type UserDeleter interface {
	// DeleteUser removes the user and frees its email address. It does not
	// touch accounts linked to the user or its sessions: it is meant for a
	// user that has neither. Deleting a missing user is not an error.
	DeleteUser(ctx context.Context, id string) error
}

// lowerEmail is how every store keys users by email: trimmed and lowercased.
// It checks nothing: providers.NormalizeEmail validates what users type.
func lowerEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// newID returns a random UUID v4 (from crypto/rand).
func newID() string { return uuid.NewString() }

// utc drops the location and the monotonic reading, so a time reads back
// from every store exactly as it was written.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// newUser prepares u for CreateUser: an ID, a normalised email, a creation time.
func newUser(u User, now time.Time) User {
	if u.ID == "" {
		u.ID = newID()
	}
	if u.Created.IsZero() {
		u.Created = now
	}
	return normUser(u)
}

// updatedUser is what UpdateUser stores: u, keeping the stored creation time.
func updatedUser(u, stored User) User {
	u.Created = stored.Created
	return normUser(u)
}

func normUser(u User) User {
	u.Email = lowerEmail(u.Email)
	u.EmailVerified = utc(u.EmailVerified)
	u.Created = utc(u.Created)
	return u
}

func checkAccount(a Account) error {
	if a.UserID == "" || a.Provider == "" || a.ProviderAccountID == "" {
		return errors.New("store: account needs a user id, a provider and a provider account id")
	}
	return nil
}

func checkToken(t VerificationToken) (VerificationToken, error) {
	if t.Identifier == "" || t.TokenHash == "" {
		return t, errors.New("store: verification token needs an identifier and a hash")
	}
	t.Expires = utc(t.Expires)
	return t, nil
}

func checkSession(s Session) (Session, error) {
	if s.ID == "" || s.UserID == "" {
		return s, errors.New("store: session needs an id and a user id")
	}
	s.Expires = utc(s.Expires)
	return s, nil
}

func checkWindow(window time.Duration) error {
	if window <= 0 {
		return fmt.Errorf("store: rate-limit window must be positive, not %v", window)
	}
	return nil
}

// live reports whether a record expiring at expires is still valid at now.
func live(expires, now time.Time) bool { return now.Before(expires) }

// counter is a rate-limit window: Count hits until Expires.
type counter struct {
	Count   int       `json:"count"`
	Expires time.Time `json:"expires"`
}

// hit counts one hit in c at now, starting a new window when c's has ended.
func (c counter) hit(now time.Time, window time.Duration) counter {
	if !live(c.Expires, now) {
		return counter{Count: 1, Expires: now.Add(window)}
	}
	c.Count++
	return c
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("store: a claim's time to live must be positive, not %v", ttl)
	}
	return nil
}

// claim is a claimed key's record.
type claim struct {
	Value   string    `json:"value"`
	Expires time.Time `json:"expires"`
}

// revocation is a revoked token's record.
type revocation struct {
	Expires time.Time `json:"expires"`
}

// sep joins the parts of a compound key. No identifier or email contains it.
const sep = "\x00"
