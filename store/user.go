package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrAccountNotLinked is returned by ResolveUser when the email address
// belongs to another user and linking by email is off (Auth.js's
// OAuthAccountNotLinked).
var ErrAccountNotLinked = errors.New("store: the email address belongs to a user who signed in another way (OAuthAccountNotLinked)")

// SignIn is what a provider established about the person signing in.
type SignIn struct {
	Provider          string // the provider's id, e.g. "github"
	ProviderAccountID string // the person's id at the provider (unused for email)
	Type              string // "oauth", "oidc", "email" or "credentials"
	Name              string
	// Email is an address the provider says is verified (OIDC's
	// email_verified, GitHub's verified primary address) or the email
	// provider's; empty for any other. ResolveUser finds, links and creates
	// users by it: an unverified address here would let whoever typed it at
	// an identity provider take the account of its owner's later sign-in
	// (pre-account hijacking).
	Email string
	Image string
	// EmailVerified means this sign-in proved the address (the email
	// provider's link was clicked): the user's EmailVerified becomes now.
	EmailVerified bool
	// AllowEmailLinking links an OAuth/OIDC account to the user who has its
	// email address (Auth.js's allowDangerousEmailAccountLinking).
	AllowEmailLinking bool
}

// resolveTries bounds how often ResolveUser starts over after finding
// another sign-in of the same person half done.
const resolveTries = 20

// linkGrace is how new a user with the sign-in's address must be for
// ResolveUser to suspect a concurrent sign-in of this account that created
// the user and is about to link it: it tries again rather than answer
// ErrAccountNotLinked at once.
const linkGrace = 2 * time.Second

// errRaced means another sign-in changed what ResolveUser had read: start over.
var errRaced = errors.New("a concurrent sign-in changed the user")

// Resolution says what ResolveUser did to find a sign-in's user.
type Resolution struct {
	// Created: the user is new (Auth.js's isNewUser).
	Created bool
	// Linked: this sign-in linked its account to the user, a new one or (with
	// AllowEmailLinking) the one with its address (Auth.js's linkAccount event).
	Linked bool
}

// ResolveUser returns the user a sign-in is for, and what it did to find it, as
// Auth.js's adapter flow does:
//
//   - the email provider (Type "email") resolves by address alone: the user
//     with the (lowercased) address, else a new one; it links no account;
//   - otherwise an account linked already gives its user, as stored (names
//     and images are not refreshed);
//   - else the user with the sign-in's address: ErrAccountNotLinked, unless
//     in.AllowEmailLinking, which links the account to that user;
//   - else a new user (with a random id), linked to the account.
//
// Concurrent first sign-ins of one person create one user: whoever loses
// the race to create the user or link the account starts over and finds the
// winner's, deleting a user it created in vain when the store is a
// UserDeleter. Because a user the winner created but has not linked yet
// looks like another person's, a user with the address created in the last
// two seconds gets ErrAccountNotLinked only after up to ~0.7s of retries.
func ResolveUser(ctx context.Context, s Store, in SignIn) (u User, res Resolution, err error) {
	in.Email = lowerEmail(in.Email)
	if in.Type == "email" && in.Email == "" {
		return User{}, Resolution{}, errors.New("store: an email sign-in needs an email address")
	}
	if in.Type != "email" && (in.Provider == "" || in.ProviderAccountID == "") {
		return User{}, Resolution{}, errors.New("store: a sign-in needs a provider and a provider account id")
	}
	wait := time.Millisecond
	for try := 1; ; try++ {
		u, res, err = resolveOnce(ctx, s, in, try < resolveTries)
		if !errors.Is(err, errRaced) {
			return u, res, err
		}
		if try == resolveTries {
			return User{}, Resolution{}, fmt.Errorf("store: resolving the user of %s account %q: gave up after %d tries: %w",
				in.Provider, in.ProviderAccountID, try, err)
		}
		select {
		case <-ctx.Done():
			return User{}, Resolution{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// resolveOnce is one attempt of ResolveUser. mayRetry allows it to answer
// errRaced rather than ErrAccountNotLinked for a brand-new user with the
// address but without the account.
func resolveOnce(ctx context.Context, s Store, in SignIn, mayRetry bool) (User, Resolution, error) {
	if in.Type != "email" {
		u, err := s.GetUserByAccount(ctx, in.Provider, in.ProviderAccountID)
		if err == nil {
			u, err = markVerified(ctx, s, u, in)
			return u, Resolution{}, err
		}
		if !errors.Is(err, ErrNotFound) {
			return User{}, Resolution{}, err
		}
	}

	if in.Email != "" {
		u, err := s.GetUserByEmail(ctx, in.Email)
		switch {
		case err == nil && in.Type != "email" && !in.AllowEmailLinking:
			if mayRetry && time.Since(u.Created) < linkGrace {
				return User{}, Resolution{}, errRaced
			}
			return User{}, Resolution{}, ErrAccountNotLinked
		case err == nil:
			var res Resolution
			if in.Type != "email" {
				if err := link(ctx, s, u.ID, in); err != nil {
					return User{}, Resolution{}, err
				}
				res.Linked = true
			}
			u, err = markVerified(ctx, s, u, in)
			return u, res, err
		case !errors.Is(err, ErrNotFound):
			return User{}, Resolution{}, err
		}
	}

	nu := User{Name: in.Name, Email: in.Email, Image: in.Image}
	if in.EmailVerified {
		nu.EmailVerified = time.Now()
	}
	u, err := s.CreateUser(ctx, nu)
	if errors.Is(err, ErrConflict) {
		return User{}, Resolution{}, errRaced // a concurrent sign-in created a user with this address
	}
	if err != nil {
		return User{}, Resolution{}, err
	}
	if in.Type == "email" {
		return u, Resolution{Created: true}, nil
	}
	err = link(ctx, s, u.ID, in)
	if err == nil {
		return u, Resolution{Created: true, Linked: true}, nil
	}
	if !errors.Is(err, errRaced) {
		return u, Resolution{}, err
	}
	winner, err := s.GetUserByAccount(ctx, in.Provider, in.ProviderAccountID)
	if err == nil && winner.ID == u.ID {
		// A concurrent sign-in linked the account to this new user by its
		// address: it reports the link.
		return u, Resolution{Created: true}, nil
	}
	if d, ok := s.(UserDeleter); ok {
		// Best effort: if this fails, the user is an orphan nobody can sign in as.
		_ = d.DeleteUser(ctx, u.ID)
	}
	if err != nil {
		return User{}, Resolution{}, errRaced
	}
	return winner, Resolution{}, nil
}

// link links in's account to the user; errRaced when it is linked already.
func link(ctx context.Context, s Store, userID string, in SignIn) error {
	err := s.LinkAccount(ctx, Account{UserID: userID, Provider: in.Provider, ProviderAccountID: in.ProviderAccountID, Type: in.Type})
	if errors.Is(err, ErrConflict) {
		return errRaced
	}
	return err
}

// markVerified records that in proved u's address.
func markVerified(ctx context.Context, s Store, u User, in SignIn) (User, error) {
	if !in.EmailVerified || in.Email == "" || u.Email != in.Email {
		return u, nil
	}
	u.EmailVerified = time.Now().UTC()
	return u, s.UpdateUser(ctx, u)
}
