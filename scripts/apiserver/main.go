// Command apiserver runs an embedded etcd and kube-apiserver in one process on
// 127.0.0.1 for dockmirror's development environment and integration tests.
//
// It generates (or reuses) its own PKI under <data-dir>/pki, keeps etcd data
// under <data-dir>/etcd, and writes an admin kubeconfig to --kubeconfig only
// once /readyz answers 200. It exits within a few seconds of SIGTERM/SIGINT.
//
// Usage: apiserver --data-dir DIR --port N --kubeconfig FILE [-- extra kube-apiserver flags]
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// stopGrace bounds how long we wait for kube-apiserver's graceful stop after a signal.
const stopGrace = 3 * time.Second

func main() {
	dataDir := flag.String("data-dir", "", "directory for pki/ and etcd/ (required)")
	port := flag.Int("port", 0, "secure port on 127.0.0.1 (0 = pick a free one)")
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig once ready (required)")
	readyTimeout := flag.Duration("ready-timeout", 120*time.Second, "give up if /readyz is not 200 by then")
	flag.Parse()
	extra := flag.Args() // everything after "--"
	if *dataDir == "" || *kubeconfig == "" {
		fatalf("--data-dir and --kubeconfig are required")
	}
	// A stale kubeconfig must never suggest readiness.
	_ = os.Remove(*kubeconfig)

	dir, err := filepath.Abs(*dataDir)
	must(err)
	pkiDir := filepath.Join(dir, "pki")
	must(os.MkdirAll(pkiDir, 0o700))
	pki, err := ensurePKI(pkiDir)
	must(err)

	if *port == 0 {
		*port = freePort()
	}
	etcdClient, etcdPeer := etcdPorts(dir)

	// Our own signal handling: kube-apiserver also listens (its own signal context),
	// but its graceful stop may take long; we bound it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	t0 := time.Now()
	etcd, err := startEtcd(filepath.Join(dir, "etcd"), etcdClient, etcdPeer)
	if err != nil {
		fatalf("etcd: %v", err)
	}
	logf("etcd ready on 127.0.0.1:%d after %s", etcdClient, time.Since(t0).Round(time.Millisecond))

	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(*port),
		"--cert-dir=" + pkiDir,
		"--tls-cert-file=" + filepath.Join(pkiDir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pkiDir, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://127.0.0.1:" + strconv.Itoa(*port),
		"--service-account-key-file=" + filepath.Join(pkiDir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pkiDir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// No controllers run here, so nobody creates "default" service accounts.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--shutdown-delay-duration=0s",
		"--shutdown-watch-termination-grace-period=0s",
		"--v=0",
	}
	args = append(args, extra...)

	apiDone := make(chan int, 1)
	go func() {
		cmd := app.NewAPIServerCommand()
		cmd.SetArgs(args)
		apiDone <- cli.Run(cmd)
	}()

	readyErr := make(chan error, 1)
	server := "https://127.0.0.1:" + strconv.Itoa(*port)
	go func() { readyErr <- waitReady(server, pki, *readyTimeout) }()

	exitCode := 0
	for waiting := true; waiting; {
		select {
		case err := <-readyErr:
			if err != nil {
				logf("not ready: %v", err)
				exitCode = 1
				waiting = false
				break
			}
			if err := writeKubeconfig(*kubeconfig, server, pki); err != nil {
				logf("writing kubeconfig: %v", err)
				exitCode = 1
				waiting = false
				break
			}
			logf("READY %s (apiserver %s, %s after start)", *kubeconfig, server,
				time.Since(t0).Round(time.Millisecond))
			fmt.Printf("READY %s\n", *kubeconfig)
			readyErr = nil
		case code := <-apiDone:
			logf("kube-apiserver exited with code %d", code)
			if code == 0 {
				code = 1 // it should never stop by itself
			}
			exitCode = code
			apiDone = nil
			waiting = false
		case s := <-sigs:
			logf("got %s, stopping", s)
			select {
			case <-apiDone:
			case <-time.After(stopGrace):
				logf("kube-apiserver still stopping after %s, not waiting", stopGrace)
			}
			apiDone = nil
			waiting = false
		}
	}
	_ = os.Remove(*kubeconfig)
	closed := make(chan struct{})
	go func() { etcd.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(1500 * time.Millisecond):
		logf("etcd close timed out")
	}
	os.Exit(exitCode)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "dockmirror-apiserver: "+format+"\n", a...)
}

func fatalf(format string, a ...any) {
	logf(format, a...)
	os.Exit(1)
}

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// etcdPorts reuses the ports recorded in <dir>/etcd-ports.json so that the
// member's stored peer URL stays valid across restarts; picks new ones if busy.
func etcdPorts(dir string) (int, int) {
	path := filepath.Join(dir, "etcd-ports.json")
	var p struct{ Client, Peer int }
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &p) == nil &&
		p.Client > 0 && p.Peer > 0 && portFree(p.Client) && portFree(p.Peer) {
		return p.Client, p.Peer
	}
	p.Client, p.Peer = freePort(), freePort()
	for p.Peer == p.Client {
		p.Peer = freePort()
	}
	b, _ := json.Marshal(p)
	must(os.WriteFile(path, b, 0o600))
	return p.Client, p.Peer
}

func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "dockmirror"
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true // test data only
	cfg.LogLevel = "error"
	cu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(clientPort))
	pu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(peerPort))
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("not ready within 60s")
	}
}

type pkiFiles struct {
	caPEM, adminCertPEM, adminKeyPEM []byte
}

func ensurePKI(dir string) (*pkiFiles, error) {
	p := func(n string) string { return filepath.Join(dir, n) }
	names := []string{"ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub"}
	complete := true
	for _, n := range names {
		if _, err := os.Stat(p(n)); err != nil {
			complete = false
		}
	}
	if !complete {
		if err := generatePKI(p); err != nil {
			return nil, err
		}
	}
	out := &pkiFiles{}
	var err error
	if out.caPEM, err = os.ReadFile(p("ca.crt")); err != nil {
		return nil, err
	}
	if out.adminCertPEM, err = os.ReadFile(p("admin.crt")); err != nil {
		return nil, err
	}
	if out.adminKeyPEM, err = os.ReadFile(p("admin.key")); err != nil {
		return nil, err
	}
	return out, nil
}

func generatePKI(p func(string) string) error {
	now := time.Now().Add(-time.Hour)
	serial := func() *big.Int {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		return n
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "dockmirror-devenv-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)

	leaf := func(name string, tmpl *x509.Certificate) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore = now
		tmpl.NotAfter = now.Add(10 * 365 * 24 * time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(p(name+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		return writePEM(p(name+".key"), "EC PRIVATE KEY", kb)
	}
	if err := leaf("apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}); err != nil {
		return err
	}
	if err := leaf("admin", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writePEM(p("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(p("sa.pub"), "PUBLIC KEY", pub); err != nil {
		return err
	}
	if err := writePEM(p("ca.key"), "EC PRIVATE KEY", mustMarshalEC(caKey)); err != nil {
		return err
	}
	// ca.crt last: ensurePKI treats the set as complete only when all files exist.
	return writePEM(p("ca.crt"), "CERTIFICATE", caDER)
}

func mustMarshalEC(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	must(err)
	return b
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func waitReady(server string, pki *pkiFiles, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.caPEM)
	cert, err := tls.X509KeyPair(pki.adminCertPEM, pki.adminKeyPEM)
	if err != nil {
		return err
	}
	c := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		},
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 within %s (last: %s)", timeout, last)
}

func writeKubeconfig(path, server string, pki *pkiFiles) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["dockmirror-devenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pki.caPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pki.adminCertPEM,
		ClientKeyData:         pki.adminKeyPEM,
	}
	kc.Contexts["dockmirror-devenv"] = &clientcmdapi.Context{Cluster: "dockmirror-devenv", AuthInfo: "admin"}
	kc.CurrentContext = "dockmirror-devenv"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*kc, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
