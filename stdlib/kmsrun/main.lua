-- placeholder replaced below
return function(argv) return 0 end
