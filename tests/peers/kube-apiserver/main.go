// A real kube-apiserver with an embedded etcd, for the Kubernetes ownership tests.
//
// Built from the Kubernetes Go modules (k8s.io/kubernetes v1.37.2 with its staging modules
// replaced by the published v0.37.2 releases) and etcd's server module, so the tests need
// no container runtime and no downloaded binaries. Everything listens on loopback.
//
// Environment:
//   ETCD_DIR          etcd's data directory (required)
//   ETCD_CLIENT_PORT  etcd's client port on 127.0.0.1 (required)
//   ETCD_PEER_PORT    etcd's peer port on 127.0.0.1 (required)
//   SA_KEY_FILE       service-account signing key; an RSA key is written there if missing
// Every argument is passed to kube-apiserver as is; --etcd-servers is added.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func must(name string) string {
	v := os.Getenv(name)
	if v == "" {
		fmt.Fprintf(os.Stderr, "kube-apiserver peer: %s is required\n", name)
		os.Exit(2)
	}
	return v
}

func writeKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
}

func main() {
	dir := must("ETCD_DIR")
	client := must("ETCD_CLIENT_PORT")
	peer := must("ETCD_PEER_PORT")
	if key := os.Getenv("SA_KEY_FILE"); key != "" {
		if err := writeKey(key); err != nil {
			fmt.Fprintf(os.Stderr, "kube-apiserver peer: service-account key: %v\n", err)
			os.Exit(1)
		}
	}

	cfg := embed.NewConfig()
	cfg.Name = "sightline-test"
	cfg.Dir = dir
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + client}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + peer}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver peer: etcd: %v\n", err)
		os.Exit(1)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "kube-apiserver peer: etcd did not become ready in 60s")
		os.Exit(1)
	}

	command := app.NewAPIServerCommand()
	command.SetArgs(append(os.Args[1:], "--etcd-servers="+clientURL.String()))
	code := cli.Run(command)
	etcd.Close()
	os.Exit(code)
}
