# The words up to the cursor, with what COMP_WORDBREAKS split off ('=', ':') glued back on.
__vault_words() {
  local line=${COMP_LINE:0:COMP_POINT} pos=0 i word glued
  words=()
  for ((i = 0; i <= COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    glued=$((i > 0))
    while [[ ${line:pos:1} == [[:space:]] ]]; do pos=$((pos + 1)); glued=0; done
    if ((glued)); then words[${#words[@]} - 1]+=$word; else words+=("$word"); fi
    pos=$((pos + ${#word}))
  done
}

# $1: NAME:ARITY:KIND entries; $2: an option name; prints ARITY:KIND.
__vault_option() {
  local entry
  for entry in $1; do
    [[ ${entry%%:*} == "$2" ]] && { printf '%s\n' "${entry#*:}"; return 0; }
  done
  return 1
}

# Sets COMPREPLY to the values of KIND ($1) that start with $2.
__vault_values() {
  local kind=$1 cur=$2
  case $kind in
    choices=*) local IFS=','; mapfile -t COMPREPLY < <(compgen -W "${kind#choices=}" -- "$cur") ;;
    file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    program)
      compopt -o filenames 2>/dev/null
      if [[ $cur == */* ]]; then mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      else mapfile -t COMPREPLY < <(compgen -c -- "$cur"); fi ;;
    secret) mapfile -t COMPREPLY < <(compgen -W "$(__vault_secret_names "$vaultdir")" -- "$cur") ;;
    *) COMPREPLY=() ;;
  esac
}

_vault() {
  local IFS=$' \t\n' subs opts args pass
  local -a words
  __vault_words
  local n=$((${#words[@]} - 1)) cmdpath='' i word pending='' pendingname='' nargs=0 free=0 vaultdir='' found
  local cur=${words[n]}
  __vault_spec "$cmdpath"
  for ((i = 1; i < n; i++)); do
    word=${words[i]}
    if [[ -n $pending ]]; then
      if [[ $pending == +:* && $word == -* ]]; then pending=''
      else
        [[ -z $cmdpath && $pendingname == --vault ]] && vaultdir=$word
        [[ $pending == +:* ]] || pending=''
        continue
      fi
    fi
    if ((free)); then nargs=$((nargs + 1)); continue; fi
    if [[ $word == -- ]]; then free=1; continue; fi
    if [[ $word == -?* ]]; then
      if [[ $word == --*=* ]]; then
        [[ -z $cmdpath && $word == --vault=* ]] && vaultdir=${word#--vault=}
      elif found=$(__vault_option "$opts" "$word") && [[ $found == [1+]:* ]]; then
        pending=$found pendingname=$word
      fi
      continue
    fi
    if ((nargs == 0)) && [[ " $subs " == *" $word "* ]]; then
      cmdpath=${cmdpath:+$cmdpath }$word
      __vault_spec "$cmdpath"
      continue
    fi
    nargs=$((nargs + 1))
    ((pass)) && free=1
  done
  vaultdir=${vaultdir#[\'\"]} vaultdir=${vaultdir%[\'\"]}
  [[ $vaultdir == '~/'* ]] && vaultdir=$HOME/${vaultdir#'~/'}
  COMPREPLY=()
  if [[ -n $pending && ! ( $pending == +:* && $cur == -* ) ]]; then
    __vault_values "${pending#*:}" "$cur"
  elif ((!free)) && [[ $cur == --*=* ]]; then
    found=$(__vault_option "$opts" "${cur%%=*}") && __vault_values "${found#*:}" "${cur#*=}"
    # readline replaces only what follows the last word-break character: '=' split the word
    local prefix=${cur%%=*}= broken=${cur#*=}
    if [[ $COMP_WORDBREAKS == *=* ]]; then
      [[ $COMP_WORDBREAKS == *:* && $broken == *:* ]] && COMPREPLY=("${COMPREPLY[@]#"${broken%:*}:"}")
    else
      COMPREPLY=("${COMPREPLY[@]/#/$prefix}")
    fi
  elif ((!free)) && [[ $cur == -* ]]; then
    local entry long=()
    for entry in $opts; do [[ $entry == --* ]] && long+=("${entry%%:*}"); done
    mapfile -t COMPREPLY < <(compgen -W "${long[*]}" -- "$cur")
  elif ((nargs == 0)) && [[ -n $subs ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
  else
    local -a kinds=($args)
    local kind=-
    if ((nargs < ${#kinds[@]})); then kind=${kinds[nargs]}
    # past the last argument: only a variadic one takes more
    elif ((${#kinds[@]} > 0)) && [[ ${kinds[-1]} == *+ ]]; then kind=${kinds[-1]}
    fi
    __vault_values "${kind%+}" "$cur"
  fi
  return 0
}
complete -F _vault vault
