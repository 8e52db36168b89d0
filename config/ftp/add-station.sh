#!/bin/sh
# add-station.sh STATION_ID: create (or replace the password of) the FTP account of a station,
# chrooted to /srv/incoming/STATION_ID; the password is read twice from standard input.
#   docker compose exec -T ftp add-station.sh BG_WW_SONGKHE < password-twice.txt
set -eu
station="${1:?usage: add-station.sh STATION_ID}"
accounts=/etc/pure-ftpd/accounts
if pure-pw show "$station" -f "$accounts/pureftpd.passwd" >/dev/null 2>&1; then
  pure-pw passwd "$station" -f "$accounts/pureftpd.passwd" -m
else
  mkdir -p "/srv/incoming/$station" && chown quantrac:quantrac "/srv/incoming/$station"
  pure-pw useradd "$station" -f "$accounts/pureftpd.passwd" -u quantrac -g quantrac \
    -d "/srv/incoming/$station" -m
fi
pure-pw mkdb "$accounts/pureftpd.pdb" -f "$accounts/pureftpd.passwd"
echo "FTP account $station ready (folder /srv/incoming/$station)"
