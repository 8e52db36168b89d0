#!/bin/sh
# pure-ftpd for stations: virtual accounts only (no anonymous, no system users), each chrooted to
# /srv/incoming/<station>, TLS offered (FTP_TLS=1) or required (FTP_TLS=2), uploads refused when
# the disk is 95 % full. Accounts: add-station.sh (docs/ftp.en.md).
set -eu
accounts=/etc/pure-ftpd/accounts
mkdir -p "$accounts" /etc/ssl/private /srv/incoming
chown quantrac:quantrac /srv/incoming
[ -f "$accounts/pureftpd.passwd" ] || touch "$accounts/pureftpd.passwd"
pure-pw mkdb "$accounts/pureftpd.pdb" -f "$accounts/pureftpd.passwd"
cert=/etc/ssl/private/pure-ftpd.pem
if [ ! -f "$cert" ]; then
  # A self-signed certificate until you mount your own (PEM: certificate then key) at $cert.
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=${FTP_PUBLIC_HOST:-quantrac}" \
    -keyout /tmp/key.pem -out /tmp/cert.pem 2>/dev/null
  cat /tmp/cert.pem /tmp/key.pem > "$cert" && rm -f /tmp/key.pem /tmp/cert.pem
  chmod 600 "$cert"
fi
exec pure-ftpd -l "puredb:$accounts/pureftpd.pdb" -E -A -j -H -u 1000 \
  -k 95 -c "${FTP_MAX_CLIENTS:-50}" -C 8 -I 15 \
  -p 30000:30009 -P "${FTP_PUBLIC_HOST:?set FTP_PUBLIC_HOST to the address stations connect to}" \
  -Y "${FTP_TLS:-1}" -2 "$cert" -O clf:/dev/stdout
