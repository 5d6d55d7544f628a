package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/caddyserver/caddy/v2"
)

// Types are the store types Options.Type may name ("" is bolt).
var Types = []string{"bolt", "memory", "redis"}

// Options is a realm's store configuration, which Open opens. Placeholders
// are the caller's to replace: Open takes every string as it is.
type Options struct {
	// Type is bolt (the default when empty), memory or redis.
	Type string
	// Path is the bolt file. Default: BoltPath(DataDir, Realm).
	Path string
	// URL is the Redis server's: redis://[user:password@]host[:port][/db],
	// rediss:// for TLS, or unix:///path; or a Redis Cluster's, in go-redis's
	// cluster URL: redis://host:port?addr=host2:port2&addr=…, which addr=
	// parameters tell from a server's (see NewRedis).
	URL string
	// Prefix starts every Redis key. Default: "authgate:<realm>:".
	Prefix string
	// Realm is the name of the realm the store serves; "" is the unnamed
	// realm, "default". It names the default bolt file and Redis prefix, and
	// the memory store that config reloads keep.
	Realm string
	// DataDir is where the default bolt file lives. Default: Caddy's data
	// directory (caddy.AppDataDir()).
	DataDir string
}

// defaultRealm is the name of the unnamed realm.
const defaultRealm = "default"

// CheckOptions reports what is wrong with o without opening the store: an
// unknown type, an option of another type's, a Redis URL that is missing or
// not redis://, rediss:// or unix://. Open checks the same.
func CheckOptions(o Options) error {
	switch o.Type {
	case "", "bolt":
		if o.URL != "" || o.Prefix != "" {
			return errors.New("store bolt: url and prefix are options of the redis store")
		}
	case "memory":
		if o.Path != "" || o.URL != "" || o.Prefix != "" {
			return errors.New("store memory: takes no path, url or prefix")
		}
	case "redis":
		if o.Path != "" {
			return errors.New("store redis: path is an option of the bolt store")
		}
		// Not url.Parse's error: it quotes the URL, password and all.
		u, err := url.Parse(o.URL)
		if err != nil || !slices.Contains([]string{"redis", "rediss", "unix"}, u.Scheme) {
			return errors.New("store redis: want a URL such as redis://host:port/db, rediss://… or unix://…")
		}
		if u.Scheme == "unix" && IsRedisClusterURL(o.URL) {
			return errors.New("store redis: a cluster URL (with addr=) is redis://… or rediss://…")
		}
	default:
		return fmt.Errorf("store: unknown type %q: want bolt, memory or redis", o.Type)
	}
	return nil
}

// Open opens the store o describes, after CheckOptions. Within a process,
// stores are shared so that a config reload, which starts the new config
// before it cleans up the old one, carries on with the same records: a bolt
// file is opened once however many handles use it, and a realm's memory
// store keeps its contents while any handle to it is open. Close releases
// the handle; the last Close closes the file or drops the memory store.
// A Redis store is a connection of its own: the server keeps the records.
func Open(ctx context.Context, o Options) (Store, error) {
	if err := CheckOptions(o); err != nil {
		return nil, err
	}
	realm := cmp.Or(o.Realm, defaultRealm)
	switch o.Type {
	case "", "bolt":
		path := o.Path
		if path == "" {
			path = BoltPath(cmp.Or(o.DataDir, caddy.AppDataDir()), realm)
		}
		b, err := shareBolt(path)
		if err != nil {
			return nil, err
		}
		return b, nil
	case "memory":
		return shareMemory(realm), nil
	default:
		r, err := NewRedis(ctx, o.URL, RedisOptions{Prefix: cmp.Or(o.Prefix, "authgate:"+realm+":")})
		if err != nil {
			return nil, err
		}
		return r, nil
	}
}

// memories holds the memory stores Open opened, by realm name, each with the
// number of handles that use it.
var memories = caddy.NewUsagePool()

// pooledMemory is a memory store in memories.
type pooledMemory struct{ m *Memory }

// Destruct does nothing: the garbage collector takes the contents.
func (pooledMemory) Destruct() error { return nil }

// shareMemory returns a new handle to the realm's memory store, which is
// created empty when no handle to it is open.
func shareMemory(realm string) *Memory {
	v, _, _ := memories.LoadOrNew(realm, func() (caddy.Destructor, error) {
		return pooledMemory{NewMemory()}, nil
	})
	return &Memory{memory: v.(pooledMemory).m.memory, release: func() error {
		_, err := memories.Delete(realm)
		return err
	}}
}

var _ caddy.Destructor = pooledMemory{}
