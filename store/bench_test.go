package store_test

import (
	"context"
	"testing"

	"github.com/authgate/caddy-authgate/store"
	"github.com/authgate/caddy-authgate/store/storetest"
)

var ctx = context.Background()

// benchStores are the stores the benchmarks compare.
var benchStores = []struct {
	name string
	open func(testing.TB) store.Store
}{
	{"memory", newMemory},
	{"bolt", newBolt},
	{"redis", func(tb testing.TB) store.Store { return redisStores(tb)(tb) }},
}

func BenchmarkGetSession(b *testing.B) {
	for _, s := range benchStores {
		b.Run(s.name, func(b *testing.B) { storetest.BenchmarkGetSession(b, s.open(b)) })
	}
}
