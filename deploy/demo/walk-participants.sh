#!/bin/sh
# walk-participants.sh BIN: demo participants for walk invitations (made-up
# names and .invalid addresses). Rerunning updates them in place.
set -eu
wp="$1/trygg-walk-planner"
add() { "$wp" admin participant add "$@" >/dev/null; }
add "Anna Berg" --org "Norrmalm district administration" --role district_official --email anna.berg@norrmalm.invalid
add "Johan Lind" --org "Police, Norrmalm" --role police --email johan.lind@police.invalid
add "Sara Ek" --org "Stockholmshem" --role housing --email sara.ek@stockholmshem.invalid --places sodra-johannes,hotorget,odenplan
add "Erik Holm" --org "Klara Fastigheter" --role housing --email erik.holm@klara.invalid --places klarakvarteren,centralstationen
add "Maria Sund" --org "City business association" --role business --email maria.sund@citybiz.invalid --places sergels-torg,kungstradgarden,hotorget
add "Olof Strand" --org "Johannes residents' association" --role residents_association --email olof@johannes-rf.invalid
add "Lena Dahl" --org "Adolf Fredriks school" --role school --email lena.dahl@school.invalid --places sodra-johannes,sveavagen
