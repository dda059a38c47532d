// Accuracy and timing check for BioFVM's default 3-D diffusion-decay solver
// (diffusion_decay_solver__constant_coefficients_LOD_3D).
//
// Usage: accuracy VOXEL_UM DT_MIN T_MIN THREADS D1,...,D10 L1,...,L10
//
// Domain [0,1000]^3 um, cubic voxels of side VOXEL_UM, no-flux boundaries
// (BioFVM's behaviour when no Dirichlet nodes are added), 10 substrates.
// Substrate i has diffusion coefficient D_i (um^2/min) and decay rate L_i (1/min).
// Initial value: u = 1 + 0.5 cos(pi x/L) cos(pi y/L) cos(pi z/L), L = 1000.
// Exact solution: u = exp(-L_i t) [1 + 0.5 cos cos cos exp(-3 D_i pi^2 t / L^2)].
//
// Only the time-stepping loop is timed. BioFVM's own messages are sent to
// stderr, so stdout holds a single JSON line with the results.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>
#include <omp.h>

#include "BioFVM.h"  // from the BioFVM source tree given to benchmarks/biofvm_case.py (-I)

using namespace BioFVM;

static const int n_substrates = 10;
static const double side = 1000.0; // cube side length L in um
static const double pi = 3.14159265358979323846;

// Parse "a,b,c,..." into exactly n_substrates numbers, or exit with a message.
static std::vector<double> parse_list(const char* text, const char* what)
{
	std::vector<double> values;
	std::stringstream stream(text);
	std::string item;
	while (std::getline(stream, item, ','))
		values.push_back(std::atof(item.c_str()));
	if ((int)values.size() != n_substrates)
	{
		std::fprintf(stderr, "expected %d comma-separated values for %s\n", n_substrates, what);
		std::exit(1);
	}
	return values;
}

// The cosine part of the initial and exact solutions.
static double cosine_mode(const std::vector<double>& c)
{
	return std::cos(pi * c[0] / side) * std::cos(pi * c[1] / side) * std::cos(pi * c[2] / side);
}

int main(int argc, char* argv[])
{
	if (argc != 7)
	{
		std::fprintf(stderr, "usage: %s VOXEL_UM DT_MIN T_MIN THREADS D1,...,D10 L1,...,L10\n", argv[0]);
		return 1;
	}
	const double voxel = std::atof(argv[1]);
	const double dt = std::atof(argv[2]);
	const double t_end = std::atof(argv[3]);
	const int threads = std::atoi(argv[4]);
	const std::vector<double> diffusion = parse_list(argv[5], "diffusion coefficients");
	const std::vector<double> decay = parse_list(argv[6], "decay rates");
	const int steps = (int)std::lround(t_end / dt);

	omp_set_num_threads(threads);
	int threads_used = 0;
	#pragma omp parallel
	{
		#pragma omp master
		threads_used = omp_get_num_threads();
	}

	// Keep BioFVM's console messages off stdout.
	std::streambuf* stdout_buffer = std::cout.rdbuf(std::cerr.rdbuf());

	// Mesh first, then the substrates (resize_densities sizes the data on the current mesh).
	Microenvironment env;
	env.resize_space_uniform(0.0, side, 0.0, side, 0.0, side, voxel);
	// BioFVM rounds the voxel count up, so the mesh only covers [0,L]^3 exactly
	// (as the exact solution assumes) when the voxel size divides L.
	if (std::fabs(env.mesh.x_coordinates.size() * voxel - side) > 1e-9 * side)
	{
		std::fprintf(stderr, "voxel size must divide %g um\n", side);
		return 1;
	}
	env.resize_densities(n_substrates);
	for (int s = 0; s < n_substrates; s++)
		env.set_density(s, "substrate" + std::to_string(s), "dimensionless", diffusion[s], decay[s]);
	env.diffusion_decay_solver = diffusion_decay_solver__constant_coefficients_LOD_3D;

	const int n_voxels = env.number_of_voxels();
	for (int n = 0; n < n_voxels; n++)
	{
		const double initial = 1.0 + 0.5 * cosine_mode(env.voxels(n).center);
		for (int s = 0; s < n_substrates; s++)
			env.density_vector(n)[s] = initial;
	}

	// Time stepping (the only timed part). BioFVM builds its Thomas-algorithm
	// coefficients on the first call, for that call's dt.
	const auto start = std::chrono::steady_clock::now();
	for (int step = 0; step < steps; step++)
		env.simulate_diffusion_decay(dt);
	const auto stop = std::chrono::steady_clock::now();
	const double loop_s = std::chrono::duration<double>(stop - start).count();

	// Errors against the exact solution at t = steps * dt, over all voxels and substrates.
	const double t = steps * dt;
	double max_abs = 0.0, sum_err2 = 0.0, sum_exact2 = 0.0;
	for (int n = 0; n < n_voxels; n++)
	{
		const double mode = cosine_mode(env.voxels(n).center);
		for (int s = 0; s < n_substrates; s++)
		{
			const double exact = std::exp(-decay[s] * t)
				* (1.0 + 0.5 * mode * std::exp(-3.0 * diffusion[s] * pi * pi * t / (side * side)));
			const double err = env.density_vector(n)[s] - exact;
			max_abs = std::fmax(max_abs, std::fabs(err));
			sum_err2 += err * err;
			sum_exact2 += exact * exact;
		}
	}

	std::cout.rdbuf(stdout_buffer);
	std::printf("{\"voxels\": %d, \"steps\": %d, \"dt\": %g, \"T\": %g, \"threads\": %d, "
		"\"loop_s\": %.6g, \"step_s\": %.6g, \"max_abs_error\": %.6e, \"rel_l2_error\": %.6e}\n",
		n_voxels, steps, dt, t, threads_used, loop_s, steps > 0 ? loop_s / steps : 0.0,
		max_abs, std::sqrt(sum_err2) / std::sqrt(sum_exact2));
	return 0;
}
