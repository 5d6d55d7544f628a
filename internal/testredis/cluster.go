package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/caddy-authgate/internal/testenv"
)

const (
	// clusterNodes is the size of every Cluster: three masters (the fewest
	// Redis Cluster accepts), each with one replica.
	clusterNodes = 6
	// NodeTimeout is the nodes' cluster-node-timeout: a master that has not
	// answered its peers for this long is failed over. Two seconds, so that
	// a failover test waits seconds, not the 15 s of Redis's default.
	NodeTimeout = 2 * time.Second
	// healthyTimeout bounds the wait for a new cluster to be ready.
	healthyTimeout = 30 * time.Second
)

// Cluster is a Redis Cluster of three masters, each with one replica, on
// loopback, started with `redis-server --cluster-enabled yes` six times and
// joined with `redis-cli --cluster create … --cluster-replicas 1`. Kill takes
// a node down as a crash does (SIGKILL): when it is a master, its replica
// takes its slots over after NodeTimeout and a little more. Restart brings a
// node back; a former master rejoins as a replica.
type Cluster struct {
	bin   string
	dir   string
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	addr   string
	dir    string
	proc   *process // nil while down
	starts int
}

// NewCluster starts a cluster for t alone and stops it when t ends. A
// cluster takes a few seconds to start: tests that leave it as they found it
// share one with SharedCluster instead.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := StartCluster()
	if err != nil {
		testenv.Unavailable(t, "testredis: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// shared is the cluster of SharedCluster.
var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// SharedCluster returns the test binary's shared cluster, which the first
// call starts; the package's TestMain stops it with StopSharedCluster after
// the tests ran. Its users keep their keys apart (a prefix of their own) and
// leave every node running.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = StartCluster() })
	if shared.err != nil {
		testenv.Unavailable(t, "testredis: %v", shared.err)
	}
	return shared.c
}

// StopSharedCluster stops the shared cluster, if a test started it.
func StopSharedCluster() {
	if shared.c != nil {
		shared.c.Stop()
	}
}

// StartCluster starts a cluster in a new temporary directory, and waits until
// every node says the cluster is ok. Stop stops it and removes the directory.
func StartCluster() (*Cluster, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: %v", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli not found: %v", err)
	}
	dir, err := os.MkdirTemp("", "testredis-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir}
	for i := range clusterNodes {
		n, err := c.startNewNode(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.Addrs()...), "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(healthyTimeout); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// startNewNode starts a node on a free port, trying a few: another process
// may take the port, or the cluster bus port 10000 above it, first.
func (c *Cluster) startNewNode(dir string) (*clusterNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	for range 5 {
		var port int
		if port, err = busablePort(); err != nil {
			return nil, err
		}
		n := &clusterNode{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
		if err = c.startNode(n); err == nil {
			return n, nil
		}
	}
	return nil, err
}

// busablePort returns a free loopback port that leaves room for its cluster
// bus port, 10000 above it.
func busablePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port+10000 <= 65535 {
			return port, nil
		}
	}
}

func (c *Cluster) startNode(n *clusterNode) error {
	n.starts++
	_, port, _ := net.SplitHostPort(n.addr)
	// A master waits repl-diskless-sync-delay (5 s) for more replicas before it
	// syncs one: none will come.
	p, err := launch(c.bin, n.addr, filepath.Join(n.dir, fmt.Sprintf("redis-%d.log", n.starts)),
		"--port", port, "--bind", "127.0.0.1", "--dir", n.dir, "--save", "", "--appendonly", "no",
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--repl-diskless-sync-delay", "0",
		"--cluster-node-timeout", strconv.FormatInt(NodeTimeout.Milliseconds(), 10))
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// Stop stops every node and removes the cluster's directory.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.proc != nil {
			n.proc.stop()
			n.proc = nil
		}
	}
	_ = os.RemoveAll(c.dir)
}

// Addrs are the nodes' host:port addresses, running or not.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// URL is go-redis's cluster URL naming every node:
// redis://<first>?addr=<second>&addr=….
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}

func (c *Cluster) node(addr string) (*clusterNode, error) {
	for _, n := range c.nodes {
		if n.addr == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("testredis: no node %s in the cluster", addr)
}

// Kill kills the node at addr with SIGKILL, as a crash would, and waits
// until it has exited.
func (c *Cluster) Kill(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.node(addr)
	if err != nil || n.proc == nil {
		return err
	}
	n.proc.kill()
	n.proc = nil
	return nil
}

// Restart starts the node at addr again, with the cluster configuration it
// had (its data is gone: there is no persistence).
func (c *Cluster) Restart(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.node(addr)
	if err != nil || n.proc != nil {
		return err
	}
	return c.startNode(n)
}

// running are the addresses of the nodes that run.
func (c *Cluster) running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var addrs []string
	for _, n := range c.nodes {
		if n.proc != nil {
			addrs = append(addrs, n.addr)
		}
	}
	return addrs
}

// WaitHealthy waits until the cluster serves every slot from running masters
// (after a Kill: once a replica has been promoted), as every running node
// sees it, and every running replica is connected to its master.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.healthy()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testredis: the cluster is not healthy after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy() error {
	running := c.running()
	for _, addr := range running {
		info, err := command(addr, "cluster", "info")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", addr)
		}
		nodes, err := clusterNodesOf(addr)
		if err != nil {
			return err
		}
		slots := 0
		for _, n := range nodes {
			if n.slots == 0 {
				continue
			}
			if n.failed || !slices.Contains(running, n.addr) {
				return fmt.Errorf("%s sees slots served by %s, which is down", addr, n.addr)
			}
			slots += n.slots
		}
		if slots != 16384 {
			return fmt.Errorf("%s sees %d slots served, want 16384", addr, slots)
		}
		repl, err := command(addr, "info", "replication")
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("replica %s is not connected to its master", addr)
		}
	}
	return nil
}

// Masters are the addresses of the masters that serve slots, as a running
// node sees them.
func (c *Cluster) Masters() ([]string, error) {
	var errs []error
	for _, addr := range c.running() {
		nodes, err := clusterNodesOf(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var masters []string
		for _, n := range nodes {
			if n.slots > 0 && !n.failed {
				masters = append(masters, n.addr)
			}
		}
		slices.Sort(masters)
		return masters, nil
	}
	return nil, fmt.Errorf("testredis: no node answers: %w", errors.Join(errs...))
}

// WaitReplicated waits until every running replica has processed what its
// master had received when WaitReplicated asked it: a write acknowledged
// before the call then survives the master's death. (Replication is
// asynchronous: Redis Cluster may lose the last writes of a master that
// dies, and a test that kills one waits here first.)
func (c *Cluster) WaitReplicated(timeout time.Duration) error {
	offsets := map[string]int64{} // master address → its offset
	for _, addr := range c.running() {
		repl, err := command(addr, "info", "replication")
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:master") {
			offsets[addr] = infoInt(repl, "master_repl_offset")
		}
	}
	deadline := time.Now().Add(timeout)
	for _, addr := range c.running() {
		for {
			repl, err := command(addr, "info", "replication")
			if err != nil {
				return err
			}
			if !strings.Contains(repl, "role:slave") {
				break
			}
			master := net.JoinHostPort(infoField(repl, "master_host"), infoField(repl, "master_port"))
			want, known := offsets[master]
			if !known || infoInt(repl, "slave_repl_offset") >= want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("testredis: replica %s has not caught up with %s after %v", addr, master, timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// infoField is a field of an INFO answer ("" when absent).
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

func infoInt(info, name string) int64 {
	n, _ := strconv.ParseInt(infoField(info, name), 10, 64)
	return n
}

// nodeView is a line of CLUSTER NODES.
type nodeView struct {
	addr   string
	failed bool // flagged fail or fail?
	slots  int  // how many slots it serves
}

func clusterNodesOf(addr string) ([]nodeView, error) {
	out, err := command(addr, "cluster", "nodes")
	if err != nil {
		return nil, err
	}
	var nodes []nodeView
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := nodeView{addr: strings.SplitN(f[1], "@", 2)[0], failed: strings.Contains(f[2], "fail")}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, isRange := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if isRange {
				b, _ = strconv.Atoi(hi)
			}
			n.slots += b - a + 1
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// command sends one command to the node at addr and returns its answer as
// text.
func command(addr string, args ...any) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := c.Do(ctx, args...).Text()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %v", addr, args, err)
	}
	return v, nil
}
