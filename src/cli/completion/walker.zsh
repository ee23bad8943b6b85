# Secret names need a vault: zsh's words are whole, so --vault DIR and --vault=DIR are read below.
__vault_values() {
  local kind=$1
  case $kind in
    choices=*) compadd -- ${(s:,:)kind#choices=} ;;
    file) _files ;;
    dir) _files -/ ;;
    program) if [[ $PREFIX == */* ]]; then _files; else _command_names -e; fi ;;
    secret) compadd -- ${(f)"$(__vault_secret_names "$vaultdir")"} ;;
  esac
}

_vault() {
  local subs opts args pass cmdpath='' word pending='' pendingname nargs=0 free=0 vaultdir='' found entry i
  local -a described_subs described_opts kinds
  __vault_spec "$cmdpath"
  for ((i = 2; i < CURRENT; i++)); do
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
      else
        for entry in ${=opts}; do
          if [[ ${entry%%:*} == $word && ${entry#*:} == [1+]:* ]]; then pending=${entry#*:} pendingname=$word; fi
        done
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
  vaultdir=${(Q)vaultdir}
  [[ $vaultdir == '~/'* ]] && vaultdir=$HOME/${vaultdir#'~/'}
  local cur=${words[CURRENT]}
  if [[ -n $pending && ! ( $pending == +:* && $cur == -* ) ]]; then
    __vault_values "${pending#*:}"
  elif ((!free)) && [[ $cur == --*=* ]]; then
    for entry in ${=opts}; do
      if [[ ${entry%%:*} == ${cur%%=*} ]]; then compset -P '*='; __vault_values "${${entry#*:}#*:}"; fi
    done
  elif ((!free)) && [[ $cur == -* ]]; then
    __vault_described "$cmdpath"
    _describe -t options 'option' described_opts
  elif ((nargs == 0)) && [[ -n $subs ]]; then
    __vault_described "$cmdpath"
    _describe -t commands 'command' described_subs
  else
    kinds=(${=args})
    local kind=${kinds[nargs + 1]:-${kinds[-1]:-}}
    # past the last argument: only a variadic one takes more
    ((nargs >= ${#kinds})) && [[ $kind != *+ ]] && kind=-
    __vault_values "${kind%+}"
  fi
  return 0
}

if [[ ${funcstack[1]} == _vault ]]; then
  _vault "$@"
else
  compdef _vault vault
fi
