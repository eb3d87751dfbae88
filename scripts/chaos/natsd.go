package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSNode is one nats-server process with JetStream and file storage; its
// storage directory survives Kill and Start.
type NATSNode struct {
	*Proc
	Port        int // client port on 127.0.0.1
	ClusterPort int // route port on 127.0.0.1; 0 for a single server
}

// URL is the node's client URL.
func (n *NATSNode) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.Port) }

// NATSNodes configures nats-server processes on the given ports: one single
// server when there is one port, else a cluster with one route to every
// other node, all on loopback. dir holds each node's storage and logs.
func NATSNodes(bin, dir string, ports, clusterPorts []int) []*NATSNode {
	nodes := make([]*NATSNode, len(ports))
	for i, port := range ports {
		name := fmt.Sprintf("nats-%d", i+1)
		args := []string{
			"-a", "127.0.0.1", "-p", strconv.Itoa(port),
			"-js", "-sd", filepath.Join(dir, name),
			"--name", name,
		}
		n := &NATSNode{Port: port}
		if len(ports) > 1 {
			n.ClusterPort = clusterPorts[i]
			var routes []string
			for j, cp := range clusterPorts {
				if j != i {
					routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(cp))
				}
			}
			args = append(args,
				"--cluster_name", "chaos",
				"--cluster", "nats://127.0.0.1:"+strconv.Itoa(n.ClusterPort),
				"--routes", strings.Join(routes, ","))
		}
		n.Proc = &Proc{Name: name, Bin: bin, Args: args, LogDir: dir}
		nodes[i] = n
	}
	return nodes
}

// ClientURLs joins the nodes' URLs the way WAGATE_NATS_URL takes them.
func ClientURLs(nodes []*NATSNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// WaitJetStream waits until JetStream answers at url (for a cluster: until
// it has a meta leader), or ctx ends.
func WaitJetStream(ctx context.Context, url string) error {
	var last error
	for {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			js, jerr := jetstream.New(nc)
			if jerr == nil {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, jerr = js.AccountInfo(actx)
				cancel()
			}
			nc.Close()
			if jerr == nil {
				return nil
			}
			err = jerr
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("jetstream at %s not ready: %v (last error %v)", url, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
