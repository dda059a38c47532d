// tissue-section: the 4.5 mm x 4.5 mm tissue section of the tme-2d scenario (lower left
// corner at (origin, origin)), meshed finely around the tumour seed and coarsely
// elsewhere (unstructured triangles).
//   regions    "seed" (tag 1): a disk of seed_radius around the seed centre
//              "stroma" (tag 2): the rest of the section
//   boundaries "left", "right" (x = origin, origin + size), "bottom", "top" (y likewise),
//              tags 1-4 as for the built-in rectangle
// Regenerate with   tumorpde mesh tissue-section -o section.msh
// and use it in tme-2d with
//   tumorpde run tme-2d --set mesh.shape=file --set 'mesh.file="section.msh"'
SetFactory("OpenCASCADE");

DefineConstant[
  size = {4.5, Name "Parameters/size"},
  origin = {-0.75, Name "Parameters/origin"},
  seed_x = {1.5, Name "Parameters/seed_x"},
  seed_y = {1.5, Name "Parameters/seed_y"},
  seed_radius = {0.3, Name "Parameters/seed_radius"},
  cell_size = {0.1, Name "Parameters/cell_size"},
  fine_cell_size = {0.03, Name "Parameters/fine_cell_size"},
  fine_radius = {0.8, Name "Parameters/fine_radius (refined around the seed centre)"}
];

Rectangle(1) = {origin, origin, 0, size, size};
Disk(2) = {seed_x, seed_y, 0, seed_radius, seed_radius};
BooleanFragments{ Surface{1}; Delete; }{ Surface{2}; Delete; }

eps = 1e-6 * size;
seed() = Surface In BoundingBox{seed_x - seed_radius - eps, seed_y - seed_radius - eps, -eps,
                                seed_x + seed_radius + eps, seed_y + seed_radius + eps, eps};
all() = Surface{:};
stroma() = all();
stroma() -= seed();

Physical Surface("seed", 1) = {seed()};
Physical Surface("stroma", 2) = {stroma()};
lo = origin - eps;
hi = origin + size + eps;
Physical Curve("left", 1) = Curve In BoundingBox{lo, lo, -eps, origin + eps, hi, eps};
Physical Curve("right", 2) = Curve In BoundingBox{hi - 2*eps, lo, -eps, hi, hi, eps};
Physical Curve("bottom", 3) = Curve In BoundingBox{lo, lo, -eps, hi, origin + eps, eps};
Physical Curve("top", 4) = Curve In BoundingBox{lo, hi - 2*eps, -eps, hi, hi, eps};

// cell size: fine_cell_size within fine_radius of the centre, growing linearly to
// cell_size over half the domain size
Field[1] = MathEval;
Field[1].F = Sprintf("min(%g, max(%g, %g + (%g - %g)*(sqrt((x-%g)^2+(y-%g)^2) - %g)/%g))",
                     cell_size, fine_cell_size, fine_cell_size, cell_size, fine_cell_size,
                     seed_x, seed_y, fine_radius, 0.5 * size);
Background Field = 1;
Mesh.MeshSizeFromPoints = 0;
Mesh.MeshSizeExtendFromBoundary = 0;
Mesh.MeshSizeFromCurvature = 0;
