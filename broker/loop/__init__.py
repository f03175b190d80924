"""What every single-threaded socket loop here needs: take what is queued without waiting
(:mod:`.drain`), and log floods of bad input at a bounded rate (:mod:`.ratelog`)."""
