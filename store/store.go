// Package store keeps what authgate must remember between requests and across
// restarts — users and their linked accounts, email verification tokens,
// database sessions, revoked tokens, rate-limit counters and claimed keys —
// behind one interface with memory, bbolt and Redis implementations, which
// Open opens from a realm's store configuration.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist (or has expired).
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a record that must be unique exists already.
var ErrConflict = errors.New("store: already exists")

// User is a person who signed in, with a stable id.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"` // lowercase
	Image string `json:"image,omitempty"`
	// EmailVerified is when the address was last proven by an email link.
	EmailVerified time.Time `json:"email_verified,omitzero"`
	Created       time.Time `json:"created"`
}

// Account links a user to a provider's account.
type Account struct {
	UserID            string `json:"user_id"`
	Provider          string `json:"provider"`
	ProviderAccountID string `json:"provider_account_id"`
	Type              string `json:"type"`
}

// VerificationToken is an email sign-in link's token, stored only as a hash.
type VerificationToken struct {
	Identifier string    `json:"identifier"` // the normalised email address
	TokenHash  string    `json:"token_hash"` // hex SHA-256 of the token and the realm secret
	Expires    time.Time `json:"expires"`
}

// Session is a database session: the cookie holds only its id.
type Session struct {
	ID      string         `json:"id"` // hex SHA-256 of the random id the cookie holds
	UserID  string         `json:"user_id"`
	Expires time.Time      `json:"expires"`
	Data    map[string]any `json:"data,omitempty"` // the token claims the session callback sees
}

// Store is what every implementation provides. Every method is safe for
// concurrent use; a record past its expiry is never returned, and expired
// records are eventually deleted (nothing grows without bound).
type Store interface {
	// CreateUser stores u, assigning a new random ID when u.ID is empty, the
	// current time when u.Created is zero, and lowercasing u.Email; it returns
	// what it stored. ErrConflict when a user with that ID, or another user
	// with that email address, exists (addresses are unique, as in Auth.js's
	// schemas).
	CreateUser(ctx context.Context, u User) (User, error)
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByEmail finds a user by (lowercase) email.
	GetUserByEmail(ctx context.Context, email string) (User, error)
	// UpdateUser replaces the stored user with the same ID, keeping its
	// Created. ErrNotFound if none; ErrConflict when another user has the
	// new email address.
	UpdateUser(ctx context.Context, u User) error

	// LinkAccount stores a. ErrConflict when the provider account is linked already.
	LinkAccount(ctx context.Context, a Account) error
	// GetUserByAccount finds the user a provider account is linked to.
	GetUserByAccount(ctx context.Context, provider, providerAccountID string) (User, error)

	// CreateVerificationToken stores t until t.Expires.
	CreateVerificationToken(ctx context.Context, t VerificationToken) error
	// UseVerificationToken deletes and returns the token: of any number of
	// concurrent calls for the same token, exactly one succeeds. ErrNotFound when
	// the token does not exist, was used, or expired.
	UseVerificationToken(ctx context.Context, identifier, tokenHash string) (VerificationToken, error)

	// CreateSession stores s until s.Expires. ErrConflict when the ID exists.
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, id string) (Session, error)
	// UpdateSession replaces a session's expiry and data (s.UserID is
	// ignored); an expiry in the past ends the session. ErrNotFound if none.
	UpdateSession(ctx context.Context, s Session) error
	// DeleteSession ends a session; ending a missing one is not an error.
	DeleteSession(ctx context.Context, id string) error
	// UserSessions lists a user's live sessions.
	UserSessions(ctx context.Context, userID string) ([]Session, error)

	// Revoke records that the token with this jti is revoked until it expires
	// (nothing is recorded when until has passed).
	Revoke(ctx context.Context, jti string, until time.Time) error
	// Revocations lists the live revocations; see RevocationLister.
	Revocations(ctx context.Context) (map[string]time.Time, error)

	// Claim sets key to value for ttl, only when key holds no live value: of
	// any number of concurrent claims of a key, exactly one succeeds and the
	// others get ErrConflict. It is a lock that expires by itself (one
	// instance refreshes a token while the others wait for the value it
	// sets) and a "seen before" check (a logout token's jti). Claims share
	// one namespace per store, which callers divide with prefixes such as
	// "refresh:". ttl must be positive.
	Claim(ctx context.Context, key, value string, ttl time.Duration) error
	// SetClaim sets key to value for ttl, claimed or not. ttl must be positive.
	SetClaim(ctx context.Context, key, value string, ttl time.Duration) error
	// GetClaim returns key's live value; ErrNotFound when it has none.
	GetClaim(ctx context.Context, key string) (string, error)

	// Hit counts one event for key in a fixed window starting at the first hit,
	// and returns the count so far in the window (window must be positive).
	Hit(ctx context.Context, key string, window time.Duration) (int, error)

	// Close releases the store's resources.
	Close() error
}
