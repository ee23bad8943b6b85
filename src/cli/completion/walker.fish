function __vault_secret_names
  set -l run vault
  test -n "$argv[1]"; and set run $run --vault $argv[1]
  # never more than a few seconds, never a word on the terminal, nothing read from it
  command -q timeout; and set run timeout 5 $run; or set run command $run
  $run list --json </dev/null 2>/dev/null | string replace -rf '^ *"name": "([A-Z_][A-Z0-9_]*)",?$' '$1'
end

# Prints the values of KIND ($argv[1]) for the token $argv[2]; fish keeps those that match.
function __vault_values
  set -l kind $argv[1]
  set -l cur $argv[2]
  switch $kind
    case 'choices=*'
      string split , -- (string replace choices= '' -- $kind)
    case file
      __fish_complete_path $cur
    case dir
      __fish_complete_directories $cur ''
    case program
      if string match -q '*/*' -- $cur
        __fish_complete_path $cur
      else
        complete -C "$cur"
      end
    case secret
      __vault_secret_names $__vault_dir
  end
end

function __vault_complete
  set -l words (commandline -opc)
  set -l cur (commandline -ct)
  set -l cmdpath ''
  set -l pending ''
  set -l pendingname ''
  set -l nargs 0
  set -l free 0
  set -g __vault_dir ''
  __vault_spec $cmdpath
  for word in $words[2..-1]
    if test -n "$pending"
      if string match -q '+:*' -- $pending; and string match -q -- '-*' $word
        set pending ''
      else
        test -z "$cmdpath" -a "$pendingname" = --vault; and set __vault_dir $word
        string match -q '+:*' -- $pending; or set pending ''
        continue
      end
    end
    if test $free = 1
      set nargs (math $nargs + 1)
      continue
    end
    if test "$word" = --
      set free 1
      continue
    end
    if string match -qr -- '^-.' $word
      if string match -q -- '--*=*' $word
        if test -z "$cmdpath"; and string match -q -- '--vault=*' $word
          set __vault_dir (string replace -- --vault= '' $word)
        end
      else
        for entry in $__vault_opts
          set -l parts (string split -m 1 : -- $entry)
          if test "$parts[1]" = "$word"; and string match -qr '^[1+]:' -- $parts[2]
            set pending $parts[2]
            set pendingname $word
          end
        end
      end
      continue
    end
    if test $nargs = 0; and contains -- $word $__vault_subs
      set cmdpath (string trim -- "$cmdpath $word")
      __vault_spec $cmdpath
      continue
    end
    set nargs (math $nargs + 1)
    test $__vault_pass = 1; and set free 1
  end
  if test -n "$pending"; and not begin; string match -q '+:*' -- $pending; and string match -q -- '-*' $cur; end
    __vault_values (string split -m 1 : -- $pending)[2] $cur
  else if test $free = 0; and string match -q -- '--*=*' $cur
    set -l name (string split -m 1 = -- $cur)
    for entry in $__vault_opts
      set -l parts (string split -m 2 : -- $entry)
      if test "$parts[1]" = "$name[1]"
        for value in (__vault_values $parts[3] $name[2])
          printf '%s=%s\n' $name[1] $value
        end
      end
    end
  else if test $free = 0; and string match -q -- '-*' $cur
    __vault_described $cmdpath | string match -- '-*'
  else if test $nargs = 0; and test (count $__vault_subs) -gt 0
    __vault_described $cmdpath | string match -v -- '-*'
  else
    set -l kind $__vault_args[-1]
    set -l at (math $nargs + 1)
    if test $at -le (count $__vault_args)
      set kind $__vault_args[$at]
    else if not string match -q '*+' -- "$kind"
      # past the last argument: only a variadic one takes more
      set kind -
    end
    __vault_values (string replace -r '\+$' '' -- "$kind") $cur
  end
end

complete -c vault -e
complete -c vault -f -a '(__vault_complete)'
