package store

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// sweepEvery is how often a Memory's writes also delete expired records:
// nothing outlives its expiry by more than this while the store is written
// to, and a store nobody writes to does not grow.
const sweepEvery = time.Minute

// Memory is a Store in the process's memory: for tests, demos and a single
// instance that may forget every user and session when it restarts. Open
// shares a realm's memory store across config reloads, so a reload forgets
// nothing; the contents go when the last handle is closed. It is not a
// Broadcaster (it has no other instances to tell).
//
// Sessions are kept JSON-encoded, so their Data reads back with the same types
// as from the persistent stores (numbers as float64, lists as []any).
type Memory struct {
	*memory
	release func() error // gives the contents back to the pool; nil when not shared
	once    sync.Once
	err     error
}

// memory is a Memory's contents, which several handles may share.
type memory struct {
	mu        sync.RWMutex
	users     map[string]User
	byEmail   map[string]string // email → user id
	accounts  map[string]Account
	tokens    map[string]VerificationToken
	sessions  map[string]memSession
	byUser    map[string]map[string]struct{} // user id → session ids
	revoked   map[string]time.Time
	hits      map[string]counter
	claims    map[string]claim
	nextSweep time.Time
}

type memSession struct {
	userID  string
	expires time.Time
	js      []byte // the whole Session
}

// NewMemory returns an empty Memory of its own, shared with nobody.
func NewMemory() *Memory { return &Memory{memory: newMemory()} }

func newMemory() *memory {
	return &memory{
		users:    map[string]User{},
		byEmail:  map[string]string{},
		accounts: map[string]Account{},
		tokens:   map[string]VerificationToken{},
		sessions: map[string]memSession{},
		byUser:   map[string]map[string]struct{}{},
		revoked:  map[string]time.Time{},
		hits:     map[string]counter{},
		claims:   map[string]claim{},
	}
}

// write locks m for a write and, every sweepEvery, deletes what has expired.
// It returns the current time and the unlock function.
func (m *memory) write() (time.Time, func()) {
	m.mu.Lock()
	now := time.Now()
	if !now.Before(m.nextSweep) {
		m.sweep(now)
		m.nextSweep = now.Add(sweepEvery)
	}
	return now, m.mu.Unlock
}

func (m *memory) sweep(now time.Time) {
	for k, t := range m.tokens {
		if !live(t.Expires, now) {
			delete(m.tokens, k)
		}
	}
	for id, s := range m.sessions {
		if !live(s.expires, now) {
			m.deleteSession(id, s.userID)
		}
	}
	for jti, until := range m.revoked {
		if !live(until, now) {
			delete(m.revoked, jti)
		}
	}
	for k, c := range m.hits {
		if !live(c.Expires, now) {
			delete(m.hits, k)
		}
	}
	for k, c := range m.claims {
		if !live(c.Expires, now) {
			delete(m.claims, k)
		}
	}
}

func (m *memory) CreateUser(_ context.Context, u User) (User, error) {
	now, unlock := m.write()
	defer unlock()
	u = newUser(u, now)
	if _, ok := m.users[u.ID]; ok {
		return User{}, ErrConflict
	}
	if u.Email != "" {
		if _, ok := m.byEmail[u.Email]; ok {
			return User{}, ErrConflict
		}
		m.byEmail[u.Email] = u.ID
	}
	m.users[u.ID] = u
	return u, nil
}

func (m *memory) GetUser(_ context.Context, id string) (User, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[id]
	if !ok {
		return User{}, ErrNotFound
	}
	return u, nil
}

func (m *memory) GetUserByEmail(ctx context.Context, email string) (User, error) {
	m.mu.RLock()
	id, ok := m.byEmail[lowerEmail(email)]
	m.mu.RUnlock()
	if !ok {
		return User{}, ErrNotFound
	}
	return m.GetUser(ctx, id)
}

func (m *memory) UpdateUser(_ context.Context, u User) error {
	_, unlock := m.write()
	defer unlock()
	stored, ok := m.users[u.ID]
	if !ok {
		return ErrNotFound
	}
	u = updatedUser(u, stored)
	if u.Email != stored.Email {
		if owner, ok := m.byEmail[u.Email]; ok && u.Email != "" && owner != u.ID {
			return ErrConflict
		}
		if stored.Email != "" {
			delete(m.byEmail, stored.Email)
		}
		if u.Email != "" {
			m.byEmail[u.Email] = u.ID
		}
	}
	m.users[u.ID] = u
	return nil
}

// DeleteUser implements UserDeleter.
func (m *memory) DeleteUser(_ context.Context, id string) error {
	_, unlock := m.write()
	defer unlock()
	u, ok := m.users[id]
	if !ok {
		return nil
	}
	if u.Email != "" && m.byEmail[u.Email] == id {
		delete(m.byEmail, u.Email)
	}
	delete(m.users, id)
	return nil
}

func (m *memory) LinkAccount(_ context.Context, a Account) error {
	if err := checkAccount(a); err != nil {
		return err
	}
	_, unlock := m.write()
	defer unlock()
	k := a.Provider + sep + a.ProviderAccountID
	if _, ok := m.accounts[k]; ok {
		return ErrConflict
	}
	m.accounts[k] = a
	return nil
}

func (m *memory) GetUserByAccount(ctx context.Context, provider, providerAccountID string) (User, error) {
	m.mu.RLock()
	a, ok := m.accounts[provider+sep+providerAccountID]
	m.mu.RUnlock()
	if !ok {
		return User{}, ErrNotFound
	}
	return m.GetUser(ctx, a.UserID)
}

func (m *memory) CreateVerificationToken(_ context.Context, t VerificationToken) error {
	t, err := checkToken(t)
	if err != nil {
		return err
	}
	_, unlock := m.write()
	defer unlock()
	m.tokens[t.Identifier+sep+t.TokenHash] = t
	return nil
}

func (m *memory) UseVerificationToken(_ context.Context, identifier, tokenHash string) (VerificationToken, error) {
	now, unlock := m.write()
	defer unlock()
	k := identifier + sep + tokenHash
	t, ok := m.tokens[k]
	if !ok {
		return VerificationToken{}, ErrNotFound
	}
	delete(m.tokens, k)
	if !live(t.Expires, now) {
		return VerificationToken{}, ErrNotFound
	}
	return t, nil
}

func (m *memory) CreateSession(_ context.Context, s Session) error {
	s, err := checkSession(s)
	if err != nil {
		return err
	}
	js, err := json.Marshal(s)
	if err != nil {
		return err
	}
	now, unlock := m.write()
	defer unlock()
	if old, ok := m.sessions[s.ID]; ok && live(old.expires, now) {
		return ErrConflict
	} else if ok {
		m.deleteSession(s.ID, old.userID)
	}
	m.putSession(memSession{userID: s.UserID, expires: s.Expires, js: js}, s.ID)
	return nil
}

func (m *memory) putSession(ms memSession, id string) {
	m.sessions[id] = ms
	ids := m.byUser[ms.userID]
	if ids == nil {
		ids = map[string]struct{}{}
		m.byUser[ms.userID] = ids
	}
	ids[id] = struct{}{}
}

func (m *memory) deleteSession(id, userID string) {
	delete(m.sessions, id)
	if ids := m.byUser[userID]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(m.byUser, userID)
		}
	}
}

func (m *memory) GetSession(_ context.Context, id string) (Session, error) {
	m.mu.RLock()
	ms, ok := m.sessions[id]
	m.mu.RUnlock()
	if !ok || !live(ms.expires, time.Now()) {
		return Session{}, ErrNotFound
	}
	var s Session
	err := json.Unmarshal(ms.js, &s)
	return s, err
}

func (m *memory) UpdateSession(_ context.Context, s Session) error {
	_, unlock := m.write()
	defer unlock()
	stored, ok := m.sessions[s.ID]
	if !ok || !live(stored.expires, time.Now()) {
		return ErrNotFound
	}
	s.UserID = stored.userID
	s.Expires = utc(s.Expires)
	js, err := json.Marshal(s)
	if err != nil {
		return err
	}
	m.putSession(memSession{userID: s.UserID, expires: s.Expires, js: js}, s.ID)
	return nil
}

func (m *memory) DeleteSession(_ context.Context, id string) error {
	_, unlock := m.write()
	defer unlock()
	if ms, ok := m.sessions[id]; ok {
		m.deleteSession(id, ms.userID)
	}
	return nil
}

func (m *memory) UserSessions(_ context.Context, userID string) ([]Session, error) {
	now := time.Now()
	var raw [][]byte
	m.mu.RLock()
	for id := range m.byUser[userID] {
		if ms := m.sessions[id]; live(ms.expires, now) {
			raw = append(raw, ms.js)
		}
	}
	m.mu.RUnlock()
	out := make([]Session, 0, len(raw))
	for _, js := range raw {
		var s Session
		if err := json.Unmarshal(js, &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (m *memory) Revoke(_ context.Context, jti string, until time.Time) error {
	now, unlock := m.write()
	defer unlock()
	if live(until, now) {
		m.revoked[jti] = until
	}
	return nil
}

// Revocations implements RevocationLister.
func (m *memory) Revocations(context.Context) (map[string]time.Time, error) {
	now := time.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]time.Time, len(m.revoked))
	for jti, until := range m.revoked {
		if live(until, now) {
			out[jti] = until
		}
	}
	return out, nil
}

func (m *memory) Hit(_ context.Context, key string, window time.Duration) (int, error) {
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	now, unlock := m.write()
	defer unlock()
	c := m.hits[key].hit(now, window)
	m.hits[key] = c
	return c.Count, nil
}

func (m *memory) Claim(_ context.Context, key, value string, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now, unlock := m.write()
	defer unlock()
	if c, ok := m.claims[key]; ok && live(c.Expires, now) {
		return ErrConflict
	}
	m.claims[key] = claim{Value: value, Expires: now.Add(ttl)}
	return nil
}

func (m *memory) SetClaim(_ context.Context, key, value string, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now, unlock := m.write()
	defer unlock()
	m.claims[key] = claim{Value: value, Expires: now.Add(ttl)}
	return nil
}

func (m *memory) GetClaim(_ context.Context, key string) (string, error) {
	m.mu.RLock()
	c, ok := m.claims[key]
	m.mu.RUnlock()
	if !ok || !live(c.Expires, time.Now()) {
		return "", ErrNotFound
	}
	return c.Value, nil
}

// Close releases this handle's share of the contents: when the last handle
// of a realm's store is closed, the contents are dropped and the realm's next
// Open starts empty. (A closed handle still reaches what it shared: memory is
// all it holds.) Closing a handle twice is harmless.
func (m *Memory) Close() error {
	m.once.Do(func() {
		if m.release != nil {
			m.err = m.release()
		}
	})
	return m.err
}

var (
	_ Store       = (*Memory)(nil)
	_ UserDeleter = (*Memory)(nil)
)
