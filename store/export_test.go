package store

import (
	"time"

	"go.etcd.io/bbolt"
)

// SetBoltLockTimeout makes opening a locked file fail after d, until restore.
func SetBoltLockTimeout(d time.Duration) (restore func()) {
	old := boltLockTimeout
	boltLockTimeout = d
	return func() { boltLockTimeout = old }
}

// OpenBoltAlone opens the database at path for the returned handle alone, as
// another process would: it shares the file with no other handle.
func OpenBoltAlone(path string) (*Bolt, error) {
	f, err := openBoltFile(path)
	if err != nil {
		return nil, err
	}
	return &Bolt{f: f, release: f.Destruct}, nil
}

// PurgeBolt runs the periodic purge now.
func PurgeBolt(b *Bolt) error { return purgeBolt(b.f.db, time.Now()) }

// BoltRecords counts the records in each bucket that holds expiring ones.
func BoltRecords(b *Bolt) (map[string]int, error) {
	n := map[string]int{}
	err := b.f.db.View(func(tx *bbolt.Tx) error {
		for _, name := range append(expiring, bUserSess) {
			n[string(name)] = tx.Bucket(name).Stats().KeyN
		}
		return nil
	})
	return n, err
}

// SweepSoon makes m's next write delete what has expired.
func SweepSoon(m *Memory) {
	m.mu.Lock()
	m.nextSweep = time.Time{}
	m.mu.Unlock()
}

// MemoryRecords counts the records in each map that holds expiring ones.
func MemoryRecords(m *Memory) map[string]int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return map[string]int{
		"tokens": len(m.tokens), "sessions": len(m.sessions), "user_sessions": len(m.byUser),
		"revocations": len(m.revoked), "hits": len(m.hits), "claims": len(m.claims),
	}
}
